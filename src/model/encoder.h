// A BERT encoder (all-MiniLM-L6-v2 and its kin) on salience's fused
// attention, with the model layer's Linear (model/linear.h) for the
// matrix products.
//
// Tokens of a batch are packed end to end ([total_tokens, hidden], no
// padding rows): the linear layers do no work on padding, and attention
// sees each sequence through cu_seqlens (flash-attn's varlen layout).
//
//   x = LayerNorm(word[id] + position[p] + token_type[0])
//   per layer:
//     [q k v] = x [Wq Wk Wv]^T + [bq bk bv]   one GEMM, [T, 3 * hidden]
//     a = AttentionForward(q, k, v)           strided views into [q k v]
//     x = LayerNorm(x + a Wo^T + bo)
//     x = LayerNorm(x + GELU(x W1^T + b1) W2^T + b2)     GELU(z) = z Phi(z)
//   embedding = normalize(mean over the sequence's tokens of x)
//
// Threads split the batch, not the matrix products: each thread takes a
// contiguous run of whole sequences (about tokens / threads of them) and
// runs it layer by layer in groups of about kGroupTokens tokens, calling
// the products and the attention kernel single-threaded. The threads never
// meet between layers, and a group's activations stay in cache from one pass
// to the next (see encoder.cc). A batch of one sequence runs on all threads
// inside the products and the attention kernel instead.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/linear.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "salience/status.h"

namespace salience::model {

// Which attention maps to keep: layers x heads, for every sequence.
struct AttentionRequest {
  std::vector<int> layers;  // empty: none
  std::vector<int> heads;   // empty: all heads
};

// probs[layer][head] is [len, len] row-major for one sequence, in the order
// of AttentionRequest's layers and heads.
struct SequenceAttention {
  std::int64_t length = 0;
  std::vector<int> layers, heads;
  std::vector<std::vector<float>> probs;  // [layers.size() * heads.size()]
  const float* At(std::size_t layer_index, std::size_t head_index) const {
    return probs[layer_index * heads.size() + head_index].data();
  }
};

struct EncoderOutput {
  std::int64_t hidden_size = 0;
  std::vector<float> embeddings;             // [batch, hidden], L2-normalized
  std::vector<SequenceAttention> attention;  // [batch] when requested
};

class Encoder {
 public:
  // Loads dir/config.json, dir/sentence_bert_config.json (max_seq_length),
  // dir/tokenizer.json and dir/model.safetensors (mapped, not copied, but
  // for tensors the header's length leaves unaligned for float); every
  // tensor's shape, and the layer count, is checked against the config.
  static Status Load(const std::string& dir, std::unique_ptr<Encoder>* encoder);
  // Finds the model directory as FindModelDir does (`flag`, then
  // $SALIENCE_MODEL_DIR, then the installed package) and loads it.
  static Status Find(const std::string& flag,
                     std::unique_ptr<Encoder>* encoder);

  // Embeds a tokenized batch; num_threads 0 = all cores.
  Status Forward(const Batch& batch, const AttentionRequest& request,
                 int num_threads, EncoderOutput* output) const;
  // Tokenizes (truncating to max_seq_length) and embeds.
  Status Embed(const std::vector<std::string>& texts,
               const AttentionRequest& request, int num_threads,
               EncoderOutput* output) const;

  const BertConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  struct Norm {
    const float* gamma = nullptr;
    const float* beta = nullptr;
  };
  struct Layer {
    Linear qkv;  // [3 * hidden, hidden]: query, key and value stacked
    Linear attention_out, intermediate, output;
    Norm attention_norm, output_norm;
  };
  // The working arrays of one thread, sized for its largest group.
  struct Scratch {
    std::vector<float> qkv, context, ffn, lse;
  };

  Encoder() = default;
  Status Bind();
  // Sequences [first, last) of the batch: embeddings, every layer over
  // groups of about kGroupTokens tokens, mean pooling; x holds the whole
  // batch's rows. `threads` is handed to the products and the attention kernel
  // (1 inside the encoder's own parallel region).
  Status ForwardSequences(const Batch& batch,
                          std::span<const std::int32_t> cu_seqlens,
                          std::int64_t first, std::int64_t last, int threads,
                          const AttentionRequest& request,
                          std::span<const int> heads, float* x,
                          EncoderOutput* output) const;
  // Layer `layer` on the group of sequences [first, last).
  Status ForwardLayer(const Batch& batch,
                      std::span<const std::int32_t> cu_seqlens,
                      std::int64_t layer, std::int64_t first, std::int64_t last,
                      int threads, const AttentionRequest& request,
                      std::span<const int> heads, float* x, Scratch* scratch,
                      EncoderOutput* output) const;

  BertConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<SafetensorsFile> weights_;
  const float* word_embeddings_ = nullptr;
  const float* position_embeddings_ = nullptr;
  const float* token_type_embeddings_ = nullptr;
  Norm embedding_norm_;
  std::vector<Layer> layers_;
  // Aligned copies of the tensors read in place whose bytes in the mapping
  // are not aligned for float.
  std::vector<std::vector<float>> unaligned_copies_;
};

}  // namespace salience::model
