// Attention probabilities recovered from the fused kernel's log-sum-exp.
//
// The fused kernel never materializes softmax(scale * Q K^T); it returns
// lse_i = log sum_j exp(scale * q_i . k_j) per query row. Each probability is
// then exact without a second softmax:
//
//   p_ij = exp(scale * q_i . k_j - lse_i)
//
// so only the rows and heads asked for are computed (cost rows x keys x
// head_dim per head), never a full N x N for every head.
#pragma once

#include <cstdint>
#include <span>

#include "salience/status.h"
#include "salience/tensor.h"

namespace salience::model {

// q    [1, seq_q, heads, head_dim]  f32 (one sequence; any strides)
// k    [1, seq_k, heads, head_dim]  f32 (heads == q's: no GQA here)
// lse  [1, heads, seq_q]            f32, as AttentionForward wrote it
// out  [heads.size(), seq_q, seq_k] f32 row-major; a row whose lse is -inf
//      (no visible key) is written as zeros.
// Keys past seq_k are not visible; a causal or windowed mask is not applied
// (the encoder's attention is bidirectional).
Status AttentionProbabilities(const TensorView& q, const TensorView& k,
                              const TensorView& lse, float scale,
                              std::span<const int> heads, std::span<float> out);

}  // namespace salience::model
