#include "model/attention_probs.h"

#include <cmath>
#include <string>

namespace salience::model {

Status AttentionProbabilities(const TensorView& q, const TensorView& k,
                              const TensorView& lse, float scale,
                              std::span<const int> heads,
                              std::span<float> out) {
  const auto invalid = [](const std::string& what) {
    return Status(StatusCode::kInvalidArgument, what);
  };
  if (q.dtype != DType::kF32 || k.dtype != DType::kF32 ||
      lse.dtype != DType::kF32)
    return invalid("AttentionProbabilities: q, k and lse must be f32");
  if (q.rank != 4 || k.rank != 4 || lse.rank != 3)
    return invalid(
        "AttentionProbabilities: q, k must be rank 4 and lse rank 3");
  if (q.shape[0] != 1 || k.shape[0] != 1)
    return invalid("AttentionProbabilities: one sequence at a time (batch 1)");
  const std::int64_t seq_q = q.shape[1], seq_k = k.shape[1];
  const std::int64_t num_heads = q.shape[2], head_dim = q.shape[3];
  if (k.shape[2] != num_heads || k.shape[3] != head_dim)
    return invalid("AttentionProbabilities: k heads/head_dim must match q");
  if (lse.shape[1] != num_heads || lse.shape[2] != seq_q)
    return invalid("AttentionProbabilities: lse must be [1, heads, seq_q]");
  for (int head : heads)
    if (head < 0 || head >= num_heads)
      return invalid("AttentionProbabilities: head " + std::to_string(head) +
                     " outside [0, " + std::to_string(num_heads) + ")");
  const std::size_t needed = heads.size() * seq_q * seq_k;
  if (out.size() < needed)
    return invalid("AttentionProbabilities: out has " +
                   std::to_string(out.size()) + " floats, needs " +
                   std::to_string(needed));

  const auto* q_data = static_cast<const float*>(q.data);
  const auto* k_data = static_cast<const float*>(k.data);
  const auto* lse_data = static_cast<const float*>(lse.data);
  for (std::size_t h = 0; h < heads.size(); ++h) {
    const int head = heads[h];
    for (std::int64_t i = 0; i < seq_q; ++i) {
      float* row = out.data() + (h * seq_q + i) * seq_k;
      const float row_lse = lse_data[lse.Offset(0, head, i)];
      if (std::isinf(row_lse)) {
        for (std::int64_t j = 0; j < seq_k; ++j) row[j] = 0.0f;
        continue;
      }
      const float* q_row = q_data + q.Offset(0, i, head, 0);
      for (std::int64_t j = 0; j < seq_k; ++j) {
        const float* k_row = k_data + k.Offset(0, j, head, 0);
        // Accumulate in double: the kernel's lse is fp32-accurate, and the
        // dot product should not add error of its own.
        double dot = 0.0;
        for (std::int64_t d = 0; d < head_dim; ++d)
          dot += static_cast<double>(q_row[d * q.strides[3]]) *
                 k_row[d * k.strides[3]];
        row[j] = static_cast<float>(std::exp(scale * dot - row_lse));
      }
    }
  }
  return Status::Ok();
}

}  // namespace salience::model
