#include "model/encoder.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>

#include "model/attention_probs.h"
#include "model/gelu.h"
#include "model/layer_norm.h"
#include "salience/attention.h"

namespace salience::model {
namespace {

// Tokens a thread takes through one layer at a time. The group's FFN
// activation ([512, 1536] floats, 3 MB) and its [512, 1152] QKV output stay
// in L2/L3 from the GEMM that writes them to the pass that reads them, and
// OpenBLAS repacks a weight matrix once per 512 rows, small next to the
// product's 512 x 384 x 384 (or more) multiply-adds. On a 2-core Zen 5
// (32 texts x 139 tokens) 512 ran 2-6% faster than 256 or 1024.
constexpr std::int64_t kGroupTokens = 512;

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

// Points every parameter into the mapping (or an aligned copy) after
// checking dtype and shape, and the layer count before sizing by it.
Status Encoder::Bind() {
  const BertConfig& c = config_;
  const auto check = [&](const std::string& name,
                         std::vector<std::int64_t> shape,
                         const StTensor** found) -> Status {
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
    *found = tensor;
    return Status::Ok();
  };
  // A tensor read in place: the mapping, or an aligned copy where the
  // header's length leaves the data unaligned for float (the format allows
  // a header of any length).
  const auto get = [&](const std::string& name, std::vector<std::int64_t> shape,
                       const float** data) -> Status {
    const StTensor* tensor = nullptr;
    const Status status = check(name, std::move(shape), &tensor);
    if (!status.ok()) return status;
    *data = reinterpret_cast<const float*>(tensor->bytes.data());
    if (reinterpret_cast<std::uintptr_t>(*data) % alignof(float) != 0) {
      std::vector<float>& copy =
          unaligned_copies_.emplace_back(tensor->num_elements());
      std::memcpy(copy.data(), tensor->bytes.data(), tensor->bytes.size());
      *data = copy.data();
    }
    return Status::Ok();
  };
  // A Linear from tensors `names` (their weights stacked in that order, e.g.
  // query, key, value into one [3 * out, in] product) and their biases.
  const auto linear = [&](const std::vector<std::string>& names,
                          std::int64_t out, std::int64_t in,
                          Linear* layer) -> Status {
    std::vector<float> weight, bias;
    for (const std::string& name : names) {
      const StTensor *w = nullptr, *b = nullptr;
      Status status = check(name + ".weight", {out, in}, &w);
      if (status.ok()) status = check(name + ".bias", {out}, &b);
      if (!status.ok()) return status;
      // Copied bytewise: the mapping need not be aligned for float.
      weight.resize(weight.size() + out * in);
      bias.resize(bias.size() + out);
      std::memcpy(weight.data() + weight.size() - out * in, w->bytes.data(),
                  w->bytes.size());
      std::memcpy(bias.data() + bias.size() - out, b->bytes.data(),
                  b->bytes.size());
    }
    const std::int64_t parts = static_cast<std::int64_t>(names.size());
    return Linear::Create(weight, bias, parts * out, in, layer);
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
  // The layers the file holds must be the config's: fewer would run part
  // of the model, more would size arrays by a count no weights back.
  if (status.ok()) status = CheckLayerCount(c, *weights_);
  if (!status.ok()) return status;
  layers_.resize(c.num_layers);
  const std::int64_t h = c.hidden_size, f = c.intermediate_size;
  for (std::int64_t l = 0; l < c.num_layers && status.ok(); ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    Layer& layer = layers_[l];
    status = linear({p + "attention.self.query", p + "attention.self.key",
                     p + "attention.self.value"},
                    h, h, &layer.qkv);
    if (status.ok())
      status =
          linear({p + "attention.output.dense"}, h, h, &layer.attention_out);
    if (status.ok())
      status = norm(p + "attention.output.LayerNorm", &layer.attention_norm);
    if (status.ok())
      status = linear({p + "intermediate.dense"}, f, h, &layer.intermediate);
    if (status.ok()) status = linear({p + "output.dense"}, h, f, &layer.output);
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
  const std::int64_t hidden = c.hidden_size, heads = c.num_heads;
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
    for (std::int32_t p = 0; p < length; ++p) {
      const std::int32_t id = batch.ids[b * batch.seq_len + p];
      if (id < 0 || id >= c.vocab_size)
        return Status(
            StatusCode::kInvalidArgument,
            "token id " + std::to_string(id) + " outside the vocabulary");
    }
    cu_seqlens.push_back(cu_seqlens.back() + length);
  }
  const std::int64_t tokens = cu_seqlens.back();

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
  output->hidden_size = hidden;
  output->embeddings.assign(batch.batch * hidden, 0.0f);
  if (batch.batch == 0) return Status::Ok();

  // Thread t takes sequences [part_begin[t], part_begin[t + 1]), split at
  // the sequence boundary nearest to t / parts of the tokens.
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
  const int parts =
      static_cast<int>(std::min<std::int64_t>(threads, batch.batch));
  std::vector<std::int64_t> part_begin(parts + 1, batch.batch);
  for (int part = 0; part < parts; ++part) {
    const std::int64_t split = tokens * part / parts;
    auto boundary =
        std::lower_bound(cu_seqlens.begin(), cu_seqlens.end() - 1, split);
    if (boundary != cu_seqlens.begin() &&
        split - boundary[-1] < boundary[0] - split)
      --boundary;
    part_begin[part] = boundary - cu_seqlens.begin();
  }
  std::vector<float> x(tokens * hidden);
  if (parts == 1)
    return ForwardSequences(batch, cu_seqlens, 0, batch.batch, num_threads,
                            request, heads_wanted, x.data(), output);
  std::vector<Status> statuses(parts);
#pragma omp parallel for num_threads(parts) schedule(static, 1)
  for (int part = 0; part < parts; ++part)
    statuses[part] = ForwardSequences(batch, cu_seqlens, part_begin[part],
                                      part_begin[part + 1], 1, request,
                                      heads_wanted, x.data(), output);
  for (const Status& status : statuses)
    if (!status.ok()) return status;
  return Status::Ok();
}

Status Encoder::ForwardSequences(const Batch& batch,
                                 std::span<const std::int32_t> cu_seqlens,
                                 std::int64_t first, std::int64_t last,
                                 int threads, const AttentionRequest& request,
                                 std::span<const int> heads, float* x,
                                 EncoderOutput* output) const {
  if (first == last) return Status::Ok();
  const BertConfig& c = config_;
  const std::int64_t hidden = c.hidden_size;
  // Groups end before the sequence that would take them past kGroupTokens
  // (a longer sequence is a group of its own).
  std::vector<std::int64_t> group_begin;
  std::int64_t largest = 0;
  for (std::int64_t b = first; b < last; ++b)
    if (group_begin.empty() ||
        cu_seqlens[b + 1] - cu_seqlens[group_begin.back()] > kGroupTokens) {
      if (!group_begin.empty())
        largest = std::max<std::int64_t>(
            largest, cu_seqlens[b] - cu_seqlens[group_begin.back()]);
      group_begin.push_back(b);
    }
  largest = std::max<std::int64_t>(
      largest, cu_seqlens[last] - cu_seqlens[group_begin.back()]);
  group_begin.push_back(last);

  float* part_x = x + cu_seqlens[first] * hidden;
  for (std::int64_t b = first; b < last; ++b) {
    for (std::int32_t p = 0; p < batch.lengths[b]; ++p) {
      const std::int32_t id = batch.ids[b * batch.seq_len + p];
      float* row = x + (cu_seqlens[b] + p) * hidden;
      const float* word =
          word_embeddings_ + static_cast<std::int64_t>(id) * hidden;
      const float* position =
          position_embeddings_ + static_cast<std::int64_t>(p) * hidden;
      for (std::int64_t i = 0; i < hidden; ++i)
        row[i] = word[i] + position[i] + token_type_embeddings_[i];
    }
  }
  BiasLayerNormInPlace(part_x, cu_seqlens[last] - cu_seqlens[first], hidden,
                       nullptr, embedding_norm_.gamma, embedding_norm_.beta,
                       c.layer_norm_eps);

  // Layer by layer, each over every group: one layer's weights (7 MB) stay
  // in the last-level cache while the groups pass through them.
  Scratch scratch;
  scratch.qkv.resize(largest * 3 * hidden);
  scratch.context.resize(largest * hidden);
  scratch.ffn.resize(largest * c.intermediate_size);
  scratch.lse.resize(largest * c.num_heads);
  for (std::int64_t l = 0; l < c.num_layers; ++l)
    for (std::size_t g = 0; g + 1 < group_begin.size(); ++g) {
      const Status status =
          ForwardLayer(batch, cu_seqlens, l, group_begin[g], group_begin[g + 1],
                       threads, request, heads, x, &scratch, output);
      if (!status.ok()) return status;
    }

  // Mean over each sequence's tokens, then unit length (sentence-transformers'
  // Pooling(mean) + Normalize).
  std::vector<double> sum(hidden);
  for (std::int64_t b = first; b < last; ++b) {
    std::fill(sum.begin(), sum.end(), 0.0);
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

Status Encoder::ForwardLayer(const Batch& batch,
                             std::span<const std::int32_t> cu_seqlens,
                             std::int64_t l, std::int64_t first,
                             std::int64_t last, int threads,
                             const AttentionRequest& request,
                             std::span<const int> heads_wanted, float* x,
                             Scratch* scratch, EncoderOutput* output) const {
  const BertConfig& c = config_;
  const Layer& layer = layers_[l];
  const std::int64_t hidden = c.hidden_size, heads = c.num_heads,
                     head_dim = c.head_dim(), ffn_width = c.intermediate_size;
  // The group's rows of x, and its cu_seqlens counted from its first row.
  const std::int64_t row0 = cu_seqlens[first];
  const std::int64_t rows = cu_seqlens[last] - row0;
  x += row0 * hidden;
  std::vector<std::int32_t> group_cu_seqlens;
  for (std::int64_t b = first; b <= last; ++b)
    group_cu_seqlens.push_back(static_cast<std::int32_t>(cu_seqlens[b] - row0));

  AttentionOptions options;
  options.cu_seqlens_q = group_cu_seqlens;
  options.cu_seqlens_k = group_cu_seqlens;
  options.num_threads = threads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  options.scale = scale;
  // q, k and v are [rows, heads, head_dim] views into the QKV GEMM's output
  // [rows, 3 * hidden], a row stride of 3 * hidden: no copies.
  float* qkv = scratch->qkv.data();
  const auto qkv_view = [&](std::int64_t part) {
    TensorView view = TensorView::Bnhd(qkv + part * hidden, DType::kF32, 1,
                                       rows, heads, head_dim);
    view.strides[0] = rows * 3 * hidden;
    view.strides[1] = 3 * hidden;
    return view;
  };
  const TensorView q_view = qkv_view(0), k_view = qkv_view(1),
                   v_view = qkv_view(2);
  float* context = scratch->context.data();
  const TensorView out_view =
      TensorView::Bnhd(context, DType::kF32, 1, rows, heads, head_dim);
  const TensorView lse_view = TensorView::Contiguous(
      scratch->lse.data(), DType::kF32, 3, {1, heads, rows, 0});
  float* ffn = scratch->ffn.data();

  layer.qkv.Forward(x, rows, hidden, qkv, 3 * hidden, Epilogue::kStore,
                    threads);
  Status status =
      AttentionForward(q_view, k_view, v_view, out_view, options, &lse_view);
  if (!status.ok()) return status;

  const auto wanted =
      std::find(request.layers.begin(), request.layers.end(), l);
  if (wanted != request.layers.end()) {
    const std::size_t layer_index = wanted - request.layers.begin();
    for (std::int64_t b = first; b < last; ++b) {
      const std::int64_t begin = cu_seqlens[b] - row0,
                         length = batch.lengths[b];
      TensorView q_seq = q_view, k_seq = k_view, lse_seq = lse_view;
      q_seq.data = qkv + begin * 3 * hidden;
      k_seq.data = qkv + begin * 3 * hidden + hidden;
      lse_seq.data = scratch->lse.data() + begin;
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

  // Both sublayers add their product straight onto the residual x.
  layer.attention_out.Forward(context, rows, hidden, x, hidden,
                              Epilogue::kAccumulate, threads);
  BiasLayerNormInPlace(x, rows, hidden, nullptr, layer.attention_norm.gamma,
                       layer.attention_norm.beta, c.layer_norm_eps);
  layer.intermediate.Forward(x, rows, hidden, ffn, ffn_width, Epilogue::kStore,
                             threads);
  BiasGeluInPlace(ffn, rows, ffn_width, nullptr);
  layer.output.Forward(ffn, rows, ffn_width, x, hidden, Epilogue::kAccumulate,
                       threads);
  BiasLayerNormInPlace(x, rows, hidden, nullptr, layer.output_norm.gamma,
                       layer.output_norm.beta, c.layer_norm_eps);
  return Status::Ok();
}

}  // namespace salience::model
