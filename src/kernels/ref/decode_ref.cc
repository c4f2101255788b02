// Reference decode, computed literally. For every sequence b, query head h
// and new query row i:
//
//   1. the visible keys are d.attn.Keys(seq, i) (lengths, causal bound and
//      window: the prefill's definition, with k_len = cached + new rows);
//   2. s_j = scale * (q . k_j) in fp64, then core::ModifyScore (softcap,
//      ALiBi), key j read from wherever the cache keeps it (d.KeyOffset:
//      the sequence's row, or its page through the block table), bf16 and
//      fp16 elements widened exactly;
//   3. out = sum_j exp(s_j - m) v_j / l,  lse = m + log(l).
//
// Only the visible keys are read, so whatever lies past a sequence's length
// or in pages it does not own never reaches its result.
#include "kernels/ref/decode_ref.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/half.h"

namespace salience::ref {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Steps 1-3 for local row i of sequence b, head h; `out` holds head_dim_v
// zeros and `lse` -inf on entry.
void AttendRow(const core::DecodeProblem& d, std::int64_t b, std::int64_t h,
               std::int64_t i, double* out, double* lse) {
  const core::Problem& p = d.attn;
  const core::SeqSpan seq = p.Seq(b);
  const core::KeyRange keys = p.Keys(seq, i);
  const std::int64_t g = h / p.group_size();
  std::vector<double> scores;
  double row_max = kNegInf;
  for (std::int64_t j = keys.begin; j < keys.end; ++j) {
    const std::int64_t k_at = d.KeyOffset(b, j, g);
    double dot = 0.0;
    for (std::int64_t c = 0; c < p.head_dim; ++c) {
      dot += static_cast<double>(core::LoadFloat(p.q, p.q.Offset(b, i, h, c))) *
             core::LoadFloat(d.cache.k, k_at + c * d.cache.k.strides[3]);
    }
    const double score = core::ModifyScore<double>(
        p, seq, b, h, i, j, static_cast<double>(p.scale) * dot);
    scores.push_back(score);
    if (!(score <= row_max)) row_max = score;  // NaN propagates
  }
  // No visible key (or all scores -inf): out = 0, lse = -inf.
  if (scores.empty() || row_max == kNegInf) return;
  double row_sum = 0.0;
  for (std::int64_t j = keys.begin; j < keys.end; ++j) {
    const double weight = std::exp(scores[j - keys.begin] - row_max);
    row_sum += weight;
    const std::int64_t v_at = d.ValueOffset(b, j, g);
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      out[c] +=
          weight * core::LoadFloat(d.cache.v, v_at + c * d.cache.v.strides[3]);
    }
  }
  for (std::int64_t c = 0; c < p.head_dim_v; ++c) out[c] /= row_sum;
  *lse = row_max + std::log(row_sum);
}

}  // namespace

ForwardResult Decode(const core::DecodeProblem& d) {
  const core::Problem& p = d.attn;
  const std::int64_t batch = p.q.shape[0], seq_q = p.q.shape[1];
  ForwardResult result;
  result.out.assign(batch * seq_q * p.heads_q * p.head_dim_v, 0.0);
  result.lse.assign(batch * p.heads_q * seq_q, kNegInf);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t i = 0; i < seq_q; ++i) {
        AttendRow(d, b, h, i,
                  &result.out[((b * seq_q + i) * p.heads_q + h) * p.head_dim_v],
                  &result.lse[(b * p.heads_q + h) * seq_q + i]);
      }
    }
  }
  return result;
}

}  // namespace salience::ref
