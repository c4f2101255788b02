// Reference attention forward: the definition in attention.h, computed
// literally. For every sequence, head and valid query row it
//
//   1. scores each visible key in fp64:  s_j = scale * (q . k_j), then
//      softcap, ALiBi and the mask (core::ModifyScore, shared with the fast
//      kernel), -inf where hidden;
//   2. takes the softmax:  m = max_j s_j,  p_j = exp(s_j - m),  l = sum_j p_j;
//   3. writes  out = sum_j z_j p_j v_j / l  and  lse = m + log(l),
//      where z_j = 1 without dropout; with it z_j is 0 for a dropped key
//      and 1 / (1 - dropout_p) for a kept one (core::Dropout, indexed by
//      the sequence and the row and key local to it). lse is the undropped
//      softmax's.
//
// A row that sees no key keeps out = 0, lse = -inf, as do padding rows and
// rows of the seq axis that belong to no sequence. Only keys inside the
// row's visible range are read, so whatever lies elsewhere (NaN included)
// cannot reach the result.
#include "kernels/ref/forward_ref.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/dropout.h"
#include "core/half.h"

namespace salience::ref {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// One element of a float tensor (f32, bf16 or f16), widened to double.
double Load(const TensorView& t, std::int64_t offset) {
  return core::LoadFloat(t, offset);
}

// Steps 1-3 above for local query row i of sequence s, head h; `out` holds
// head_dim_v zeros and `lse` -inf on entry.
void AttendRow(const core::Problem& p, const core::Dropout& dropout,
               const core::SeqSpan& seq, std::int64_t s, std::int64_t h,
               std::int64_t i, double* out, double* lse) {
  const core::KeyRange keys = p.Keys(seq, i);
  const std::int64_t b = seq.tensor_batch;
  const std::int64_t q_row = seq.q_begin + i;
  const std::int64_t kv_head = h / p.group_size();

  // 1. Scores of the visible keys; scores[j - keys.begin].
  std::vector<double> scores;
  double row_max = kNegInf;
  bool sees_a_key = false;
  for (std::int64_t j = keys.begin; j < keys.end; ++j) {
    double dot = 0.0;
    for (std::int64_t d = 0; d < p.head_dim; ++d) {
      dot += Load(p.q, p.q.Offset(b, q_row, h, d)) *
             Load(p.k, p.k.Offset(b, seq.k_begin + j, kv_head, d));
    }
    const double score = core::ModifyScore<double>(
        p, seq, s, h, i, j, static_cast<double>(p.scale) * dot);
    scores.push_back(score);
    // A NaN score counts as seen, so it propagates through step 2.
    if (score != kNegInf) sees_a_key = true;
    if (score > row_max) row_max = score;
  }
  if (!sees_a_key) return;  // fully masked: out = 0, lse = -inf

  // 2-3. Softmax weights and the weighted sum of V; hidden and dropped keys
  // are skipped (not multiplied by a zero weight) so their V is never read.
  // A dropped key still counts in the normalizer l.
  const double keep_scale = dropout.keep_scale();
  double row_sum = 0.0;
  for (std::int64_t j = keys.begin; j < keys.end; ++j) {
    const double score = scores[j - keys.begin];
    if (score == kNegInf) continue;
    const double weight = std::exp(score - row_max);
    row_sum += weight;
    if (dropout.enabled() && !dropout.Keeps(s, p.heads_q, h, i, j)) continue;
    const double kept = weight * keep_scale;
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      out[c] += kept * Load(p.v, p.v.Offset(b, seq.k_begin + j, kv_head, c));
    }
  }
  for (std::int64_t c = 0; c < p.head_dim_v; ++c) out[c] /= row_sum;
  *lse = row_max + std::log(row_sum);
}

}  // namespace

ForwardResult Forward(const core::Problem& p) {
  const std::int64_t batch = p.q.shape[0], seq_q = p.q.shape[1];
  ForwardResult result;
  result.out.assign(batch * seq_q * p.heads_q * p.head_dim_v, 0.0);
  result.lse.assign(batch * p.heads_q * seq_q, kNegInf);
  const core::Dropout dropout(p.options);
  for (std::int64_t s = 0; s < p.num_seqs; ++s) {
    const core::SeqSpan seq = p.Seq(s);
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t i = 0; i < seq.q_len; ++i) {
        const std::int64_t b = seq.tensor_batch, row = seq.q_begin + i;
        AttendRow(
            p, dropout, seq, s, h, i,
            &result.out[((b * seq_q + row) * p.heads_q + h) * p.head_dim_v],
            &result.lse[(b * p.heads_q + h) * seq_q + row]);
      }
    }
  }
  return result;
}

void Store(const core::Problem& p, const ForwardResult& result) {
  const std::int64_t batch = p.q.shape[0], seq_q = p.q.shape[1];
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t row = 0; row < seq_q; ++row) {
      for (std::int64_t h = 0; h < p.heads_q; ++h) {
        const double* out =
            &result.out[((b * seq_q + row) * p.heads_q + h) * p.head_dim_v];
        for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
          core::StoreFloat(p.out, p.out.Offset(b, row, h, c),
                           static_cast<float>(out[c]));
        }
        if (p.lse != nullptr) {
          static_cast<float*>(p.lse->data)[p.lse->Offset(b, h, row)] =
              static_cast<float>(result.lse[(b * p.heads_q + h) * seq_q + row]);
        }
      }
    }
  }
}

}  // namespace salience::ref
