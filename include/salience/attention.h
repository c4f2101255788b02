// salience: exact scaled-dot-product attention on CPUs.
//
//   out[b, i, h, :] = sum_j softmax_j(score(b, h, i, j)) * v[b, j, h / G, :]
//
// with G = heads_q / heads_kv (grouped-query attention) and
//
//   s     = scale * dot(q[b, i, h, :], k[b, j, h / G, :])
//   s     = softcap * tanh(s / softcap)                    if softcap > 0
//   s    += -alibi_slope[b, h] * |i + k_len - q_len - j|   if ALiBi slopes
//   s    += mask[b, h, i, j]                               if additive mask
//   s     = -inf where the key is hidden (causal, window, padding, bool mask,
//           or an additive mask entry of -inf)
//
// Shapes (logical axes; any strides, see tensor.h):
//   q    [batch, seq_q, heads_q,  head_dim]
//   k    [batch, seq_k, heads_kv, head_dim]
//   v    [batch, seq_k, heads_kv, head_dim_v]
//   out  [batch, seq_q, heads_q,  head_dim_v]
//   lse  [batch, heads_q, seq_q]            fp32, natural log, optional
//   mask [batch|1, heads_q|1, seq_q|1, seq_k|1]  bool or fp32, optional
//
// Element types: q, k, v and out are each f32, bf16 or f16, with k and v of
// one dtype; out's is the caller's choice. Products and sums are fp32 (bf16
// products may round the softmax weights to bf16, see docs/design.md);
// out is rounded once at the end; lse stays fp32.
//
// Numerics: a query row whose keys are all hidden gets out = 0 and
// lse = -inf. Values stored past a sequence's valid length, or at keys a row
// cannot see, never reach that row, even when they are NaN. Results are
// bitwise identical across runs and thread counts.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "salience/status.h"
#include "salience/tensor.h"

namespace salience {

// Largest head_dim (and head_dim_v) the kernels accept.
inline constexpr std::int64_t kMaxHeadDim = 512;

// Which diagonal "query i sees key i" refers to when seq_q != seq_k.
enum class Align : std::uint8_t {
  kTopLeft,      // query i is aligned with key i (torch's is_causal)
  kBottomRight,  // query i is aligned with key i + k_len - q_len (flash-attn)
};

enum class Causal : std::uint8_t {
  kNone,
  kTopLeft,      // query i sees keys j <= i
  kBottomRight,  // query i sees keys j <= i + k_len - q_len
};

struct AttentionOptions {
  // Multiplies q.k; unset means 1 / sqrt(head_dim).
  std::optional<float> scale;

  Causal causal = Causal::kNone;

  // Sliding window: query i sees keys j with
  //   a - window_left <= j <= a + window_right,  a = i (+ k_len - q_len)
  // where a depends on window_align. A negative bound is unbounded.
  std::int64_t window_left = -1;
  std::int64_t window_right = -1;
  Align window_align = Align::kBottomRight;

  // Padding: valid lengths per batch entry ([batch] each). Rows past
  // seqlens_q are written as out = 0, lse = -inf; keys past seqlens_k are
  // never read into the result.
  std::span<const std::int32_t> seqlens_q;
  std::span<const std::int32_t> seqlens_k;

  // Packed variable-length batch (flash-attn's varlen API): q/k/v/out have
  // batch 1 and the sequences lie end to end along seq; sequence s occupies
  // rows [cu_seqlens[s], cu_seqlens[s+1]). Both or neither, num_seqs + 1
  // entries each, non-decreasing, starting at 0. The mask and ALiBi batch
  // axes then index sequences, and lse is [1, heads_q, total_q].
  std::span<const std::int32_t> cu_seqlens_q;
  std::span<const std::int32_t> cu_seqlens_k;

  // Optional mask: kBool (true = may attend) or kF32 (added to the score).
  // Axes of size 1 or stride 0 broadcast. data == nullptr means no mask.
  TensorView mask;

  // ALiBi slopes, fp32: heads_q entries, or batch * heads_q (row-major).
  std::span<const float> alibi_slopes;

  // Logit soft-capping; 0 disables.
  float softcap = 0.0f;

  // Dropout on the attention weights (training): each weight is kept with
  // probability 1 - dropout_p, in [0, 1), and kept weights are scaled by
  // 1 / (1 - dropout_p); lse stays that of the undropped softmax. Whether
  // weight (sequence, head, query row, key) is kept is a pure function of
  // (dropout_seed, dropout_offset) and those four indices (Philox4x32-10,
  // src/core/dropout.h), so the backward regenerates the forward's mask
  // without storing it and results do not depend on the thread count.
  float dropout_p = 0.0f;
  std::uint64_t dropout_seed = 0;
  std::uint64_t dropout_offset = 0;
  // Worker threads; 0 means all cores.
  int num_threads = 0;
};

// The fused kernel: online softmax over key blocks, nothing of size
// seq_q x seq_k is allocated. `lse` may be null. A call of decode shape (at
// most 16 query rows per kv head, or 64 with 1024 keys or more; no mask
// tensor, dropout, varlen batch or query padding) runs on the decode kernel
// of AttentionWithKvCache (salience/decode.h), k and v as its cache, and
// returns that entry point's result bit for bit.
Status AttentionForward(const TensorView& q, const TensorView& k,
                        const TensorView& v, const TensorView& out,
                        const AttentionOptions& options,
                        const TensorView* lse = nullptr);

// The reference: materializes scores and accumulates in fp64. Slow, obvious,
// and the oracle the fast kernel is tested against. Same contract.
Status AttentionForwardReference(const TensorView& q, const TensorView& k,
                                 const TensorView& v, const TensorView& out,
                                 const AttentionOptions& options,
                                 const TensorView* lse = nullptr);

// Gradients of AttentionForward (FlashAttention-2's backward): recomputes
// the weights block by block from q, k and the forward's lse, so nothing of
// size seq_q x seq_k is stored.
//   out, d_out   [batch, seq_q, heads_q, head_dim_v]  the forward's output and
//                                                    the loss's gradient of it
//   lse          [batch, heads_q, seq_q]  fp32, as the forward returned it
//   dq, dk, dv   shaped like q, k, v; written whole (keys no row sees get 0;
//                for GQA, dk and dv sum over the query heads of a group)
// Options must be the forward's (dropout seed and offset included). Rows
// whose keys were all hidden (lse = -inf) get zero gradients. Bitwise
// identical across runs and thread counts.
Status AttentionBackward(const TensorView& q, const TensorView& k,
                         const TensorView& v, const TensorView& out,
                         const TensorView& d_out, const TensorView& lse,
                         const TensorView& dq, const TensorView& dk,
                         const TensorView& dv, const AttentionOptions& options);

// The reference backward: materializes the weights, fp64 accumulation.
Status AttentionBackwardReference(const TensorView& q, const TensorView& k,
                                  const TensorView& v, const TensorView& out,
                                  const TensorView& d_out, const TensorView& lse,
                                  const TensorView& dq, const TensorView& dk,
                                  const TensorView& dv,
                                  const AttentionOptions& options);

}  // namespace salience
