#include "model/encoder.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>

#include "model/attention_probs.h"
#include "model/gelu.h"
#include "salience/attention.h"

namespace salience::model {
namespace {

// y[T, out] = x[T, in] W^T (+ b), with W [out, in] row-major (torch's
// Linear). Without `bias` the caller adds it in its next pass over y.
void LinearForward(const float* x, std::int64_t tokens, const float* weight,
                   const float* bias, std::int64_t out_features,
                   std::int64_t in_features, float* y) {
  if (bias != nullptr)
    for (std::int64_t t = 0; t < tokens; ++t)
      std::memcpy(y + t * out_features, bias, out_features * sizeof(float));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tokens),
              static_cast<int>(out_features), static_cast<int>(in_features),
              1.0f, x, static_cast<int>(in_features), weight,
              static_cast<int>(in_features), bias != nullptr ? 1.0f : 0.0f, y,
              static_cast<int>(out_features));
}

// x = LayerNorm(x + (update + bias)) over rows of width `width`, the
// residual connection of a BERT sublayer; update and bias may be null.
// Statistics in double: eps is 1e-12, so the variance must be exact.
void AddLayerNorm(float* x, const float* update, const float* bias,
                  std::int64_t tokens, std::int64_t width, const float* gamma,
                  const float* beta, float eps) {
#pragma omp parallel for schedule(static)
  for (std::int64_t t = 0; t < tokens; ++t) {
    float* row = x + t * width;
    if (update != nullptr)
      for (std::int64_t c = 0; c < width; ++c)
        row[c] += update[t * width + c] + (bias != nullptr ? bias[c] : 0.0f);
    double mean = 0.0;
    for (std::int64_t c = 0; c < width; ++c) mean += row[c];
    mean /= static_cast<double>(width);
    double variance = 0.0;
    for (std::int64_t c = 0; c < width; ++c) {
      const double centered = row[c] - mean;
      variance += centered * centered;
    }
    variance /= static_cast<double>(width);
    const double inv_std = 1.0 / std::sqrt(variance + eps);
    for (std::int64_t c = 0; c < width; ++c)
      row[c] =
          static_cast<float>((row[c] - mean) * inv_std) * gamma[c] + beta[c];
  }
}

std::string ShapeText(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

}  // namespace

Status Encoder::Find(const std::string& flag,
                     std::unique_ptr<Encoder>* encoder) {
  std::string dir;
  const Status status = FindModelDir(flag, &dir);
  if (!status.ok()) return status;
  return Load(dir, encoder);
}

Status Encoder::Load(const std::string& dir,
                     std::unique_ptr<Encoder>* encoder) {
  std::unique_ptr<Encoder> result(new Encoder());
  Status status = LoadBertConfig(dir, &result->config_);
  if (!status.ok()) return status;
  status =
      Tokenizer::FromJsonFile(dir + "/tokenizer.json", &result->tokenizer_);
  if (!status.ok()) return status;
  status = SafetensorsFile::Open(dir + "/model.safetensors", &result->weights_);
  if (!status.ok()) return status;
  status = result->Bind();
  if (!status.ok()) return status;
  *encoder = std::move(result);
  return Status::Ok();
}

// Points every parameter into the mapping after checking dtype and shape.
Status Encoder::Bind() {
  const BertConfig& c = config_;
  const auto get = [&](const std::string& name, std::vector<std::int64_t> shape,
                       const float** data) -> Status {
    const StTensor* tensor = weights_->Find(name);
    // Older exports prefix every name with the architecture.
    if (tensor == nullptr) tensor = weights_->Find("bert." + name);
    if (tensor == nullptr)
      return Status(StatusCode::kInvalidArgument,
                    weights_->path() + ": missing tensor '" + name + "'");
    if (tensor->dtype != StDType::kF32)
      return Status(StatusCode::kUnsupported,
                    weights_->path() + ": tensor '" + name + "' is " +
                        StDTypeName(tensor->dtype) + ", only F32 is supported");
    if (tensor->shape != shape)
      return Status(StatusCode::kInvalidArgument,
                    weights_->path() + ": tensor '" + name + "' has shape " +
                        ShapeText(tensor->shape) + ", config.json implies " +
                        ShapeText(shape));
    if (reinterpret_cast<std::uintptr_t>(tensor->bytes.data()) %
            alignof(float) !=
        0)
      return Status(
          StatusCode::kInvalidArgument,
          weights_->path() + ": tensor '" + name + "' is not 4-byte aligned");
    *data = reinterpret_cast<const float*>(tensor->bytes.data());
    return Status::Ok();
  };
  const auto linear = [&](const std::string& name, std::int64_t out,
                          std::int64_t in, Linear* layer) -> Status {
    layer->out = out;
    layer->in = in;
    Status status = get(name + ".weight", {out, in}, &layer->weight);
    return status.ok() ? get(name + ".bias", {out}, &layer->bias) : status;
  };
  const auto norm = [&](const std::string& name, Norm* layer) -> Status {
    Status status = get(name + ".weight", {c.hidden_size}, &layer->gamma);
    return status.ok() ? get(name + ".bias", {c.hidden_size}, &layer->beta)
                       : status;
  };
  Status status = get("embeddings.word_embeddings.weight",
                      {c.vocab_size, c.hidden_size}, &word_embeddings_);
  if (status.ok())
    status =
        get("embeddings.position_embeddings.weight",
            {c.max_position_embeddings, c.hidden_size}, &position_embeddings_);
  if (status.ok())
    status = get("embeddings.token_type_embeddings.weight",
                 {c.type_vocab_size, c.hidden_size}, &token_type_embeddings_);
  if (status.ok()) status = norm("embeddings.LayerNorm", &embedding_norm_);
  layers_.resize(c.num_layers);
  for (std::int64_t l = 0; l < c.num_layers && status.ok(); ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    Layer& layer = layers_[l];
    const std::int64_t h = c.hidden_size, f = c.intermediate_size;
    if (status.ok())
      status = linear(p + "attention.self.query", h, h, &layer.query);
    if (status.ok())
      status = linear(p + "attention.self.key", h, h, &layer.key);
    if (status.ok())
      status = linear(p + "attention.self.value", h, h, &layer.value);
    if (status.ok())
      status = linear(p + "attention.output.dense", h, h, &layer.attention_out);
    if (status.ok())
      status = norm(p + "attention.output.LayerNorm", &layer.attention_norm);
    if (status.ok())
      status = linear(p + "intermediate.dense", f, h, &layer.intermediate);
    if (status.ok()) status = linear(p + "output.dense", h, f, &layer.output);
    if (status.ok()) status = norm(p + "output.LayerNorm", &layer.output_norm);
  }
  if (status.ok() && tokenizer_->vocab_size() != c.vocab_size)
    status = Status(StatusCode::kInvalidArgument,
                    "tokenizer.json: vocabulary has " +
                        std::to_string(tokenizer_->vocab_size()) +
                        " entries, config.json's vocab_size is " +
                        std::to_string(c.vocab_size));
  return status;
}

Status Encoder::Embed(const std::vector<std::string>& texts,
                      const AttentionRequest& request, int num_threads,
                      EncoderOutput* output) const {
  Batch batch;
  Status status =
      tokenizer_->EncodeBatch(texts, config_.max_seq_length, &batch);
  if (!status.ok()) return status;
  return Forward(batch, request, num_threads, output);
}

Status Encoder::Forward(const Batch& batch, const AttentionRequest& request,
                        int num_threads, EncoderOutput* output) const {
  const BertConfig& c = config_;
  const std::int64_t hidden = c.hidden_size, heads = c.num_heads,
                     head_dim = c.head_dim();
  for (int layer : request.layers)
    if (layer < 0 || layer >= c.num_layers)
      return Status(StatusCode::kInvalidArgument,
                    "layer " + std::to_string(layer) + " outside [0, " +
                        std::to_string(c.num_layers) + ")");
  std::vector<int> heads_wanted = request.heads;
  if (heads_wanted.empty())
    for (int h = 0; h < heads; ++h) heads_wanted.push_back(h);
  for (int head : heads_wanted)
    if (head < 0 || head >= heads)
      return Status(StatusCode::kInvalidArgument,
                    "head " + std::to_string(head) + " outside [0, " +
                        std::to_string(heads) + ")");

  // Pack the real tokens end to end.
  std::vector<std::int32_t> cu_seqlens{0};
  for (std::int64_t b = 0; b < batch.batch; ++b) {
    const std::int32_t length = batch.lengths[b];
    if (length <= 0 || length > c.max_position_embeddings ||
        length > batch.seq_len)
      return Status(StatusCode::kInvalidArgument,
                    "sequence " + std::to_string(b) + " has length " +
                        std::to_string(length) + ", expected 1.." +
                        std::to_string(std::min(c.max_position_embeddings,
                                                batch.seq_len)));
    cu_seqlens.push_back(cu_seqlens.back() + length);
  }
  const std::int64_t tokens = cu_seqlens.back();
  std::vector<float> x(tokens * hidden), q(tokens * hidden), k(tokens * hidden),
      v(tokens * hidden), context(tokens * hidden), update(tokens * hidden),
      ffn(tokens * c.intermediate_size), lse(heads * tokens);

  for (std::int64_t b = 0; b < batch.batch; ++b) {
    for (std::int32_t p = 0; p < batch.lengths[b]; ++p) {
      const std::int32_t id = batch.ids[b * batch.seq_len + p];
      if (id < 0 || id >= c.vocab_size)
        return Status(
            StatusCode::kInvalidArgument,
            "token id " + std::to_string(id) + " outside the vocabulary");
      float* row = x.data() + (cu_seqlens[b] + p) * hidden;
      const float* word =
          word_embeddings_ + static_cast<std::int64_t>(id) * hidden;
      const float* position =
          position_embeddings_ + static_cast<std::int64_t>(p) * hidden;
      for (std::int64_t i = 0; i < hidden; ++i)
        row[i] = word[i] + position[i] + token_type_embeddings_[i];
    }
  }
  AddLayerNorm(x.data(), nullptr, nullptr, tokens, hidden,
               embedding_norm_.gamma, embedding_norm_.beta, c.layer_norm_eps);

  if (num_threads > 0) openblas_set_num_threads(num_threads);
  AttentionOptions options;
  options.cu_seqlens_q = cu_seqlens;
  options.cu_seqlens_k = cu_seqlens;
  options.num_threads = num_threads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  options.scale = scale;
  const TensorView q_view =
      TensorView::Bnhd(q.data(), DType::kF32, 1, tokens, heads, head_dim);
  const TensorView k_view =
      TensorView::Bnhd(k.data(), DType::kF32, 1, tokens, heads, head_dim);
  const TensorView v_view =
      TensorView::Bnhd(v.data(), DType::kF32, 1, tokens, heads, head_dim);
  const TensorView out_view =
      TensorView::Bnhd(context.data(), DType::kF32, 1, tokens, heads, head_dim);
  const TensorView lse_view =
      TensorView::Contiguous(lse.data(), DType::kF32, 3, {1, heads, tokens, 0});

  output->attention.clear();
  if (!request.layers.empty()) {
    output->attention.resize(batch.batch);
    for (std::int64_t b = 0; b < batch.batch; ++b) {
      SequenceAttention& seq = output->attention[b];
      seq.length = batch.lengths[b];
      seq.layers = request.layers;
      seq.heads = heads_wanted;
      seq.probs.resize(request.layers.size() * heads_wanted.size());
    }
  }

  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const Layer& layer = layers_[l];
    LinearForward(x.data(), tokens, layer.query.weight, layer.query.bias,
                  hidden, hidden, q.data());
    LinearForward(x.data(), tokens, layer.key.weight, layer.key.bias, hidden,
                  hidden, k.data());
    LinearForward(x.data(), tokens, layer.value.weight, layer.value.bias,
                  hidden, hidden, v.data());
    Status status =
        AttentionForward(q_view, k_view, v_view, out_view, options, &lse_view);
    if (!status.ok()) return status;

    const auto wanted =
        std::find(request.layers.begin(), request.layers.end(), l);
    if (wanted != request.layers.end()) {
      const std::size_t layer_index = wanted - request.layers.begin();
      for (std::int64_t b = 0; b < batch.batch; ++b) {
        const std::int64_t begin = cu_seqlens[b], length = batch.lengths[b];
        TensorView q_seq = q_view, k_seq = k_view, lse_seq = lse_view;
        q_seq.data = q.data() + begin * hidden;
        k_seq.data = k.data() + begin * hidden;
        lse_seq.data = lse.data() + begin;
        q_seq.shape[1] = k_seq.shape[1] = lse_seq.shape[2] = length;
        std::vector<float> probs(heads_wanted.size() * length * length);
        status = AttentionProbabilities(q_seq, k_seq, lse_seq, scale,
                                        heads_wanted, probs);
        if (!status.ok()) return status;
        SequenceAttention& seq = output->attention[b];
        for (std::size_t h = 0; h < heads_wanted.size(); ++h)
          seq.probs[layer_index * heads_wanted.size() + h].assign(
              probs.begin() + h * length * length,
              probs.begin() + (h + 1) * length * length);
      }
    }

    // Sublayer outputs go to `update`; their biases join in the next pass.
    LinearForward(context.data(), tokens, layer.attention_out.weight, nullptr,
                  hidden, hidden, update.data());
    AddLayerNorm(x.data(), update.data(), layer.attention_out.bias, tokens,
                 hidden, layer.attention_norm.gamma, layer.attention_norm.beta,
                 c.layer_norm_eps);
    LinearForward(x.data(), tokens, layer.intermediate.weight, nullptr,
                  c.intermediate_size, hidden, ffn.data());
    BiasGeluInPlace(ffn.data(), tokens, c.intermediate_size,
                    layer.intermediate.bias);
    LinearForward(ffn.data(), tokens, layer.output.weight, nullptr, hidden,
                  c.intermediate_size, update.data());
    AddLayerNorm(x.data(), update.data(), layer.output.bias, tokens, hidden,
                 layer.output_norm.gamma, layer.output_norm.beta,
                 c.layer_norm_eps);
  }

  // Mean over each sequence's tokens, then unit length (sentence-transformers'
  // Pooling(mean) + Normalize).
  output->hidden_size = hidden;
  output->embeddings.assign(batch.batch * hidden, 0.0f);
  for (std::int64_t b = 0; b < batch.batch; ++b) {
    std::vector<double> sum(hidden, 0.0);
    for (std::int64_t t = cu_seqlens[b]; t < cu_seqlens[b + 1]; ++t)
      for (std::int64_t i = 0; i < hidden; ++i) sum[i] += x[t * hidden + i];
    double norm = 0.0;
    for (std::int64_t i = 0; i < hidden; ++i) {
      sum[i] /= batch.lengths[b];
      norm += sum[i] * sum[i];
    }
    norm = std::max(std::sqrt(norm), 1e-12);
    for (std::int64_t i = 0; i < hidden; ++i)
      output->embeddings[b * hidden + i] = static_cast<float>(sum[i] / norm);
  }
  return Status::Ok();
}

std::string BlasCoreName() { return openblas_get_corename(); }

}  // namespace salience::model
