// Merging attention states: the outputs of one query row over disjoint key
// sets, each normalized by its own softmax sum and carried with its
// log-sum-exp, combine exactly into the output over their union:
//
//   m = max_p lse_p,  w_p = exp(lse_p - m),  W = sum_p w_p
//   out = sum_p (w_p / W) out_p,  lse = m + log W
//
// Used by the split-KV decode (parts = splits, in key order) and by the
// public MergeAttentionStates (two parts), so both round the same way.
#pragma once

#include <cmath>
#include <cstddef>
#include <limits>

namespace salience::kernels {

// Sets weights[p] = w_p / W for lse[0 .. parts) and returns the merged lse.
// A part with lse = -inf (no keys) gets weight exactly 0 and a lone
// non-empty part weight exactly 1, so it passes through unchanged; all
// parts empty give weights 0 and -inf (never -inf - -inf = NaN).
inline float MergeWeights(const float* lse, std::size_t parts, float* weights) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float m = kNegInf;
  for (std::size_t p = 0; p < parts; ++p) m = lse[p] > m ? lse[p] : m;
  if (m == kNegInf) {
    for (std::size_t p = 0; p < parts; ++p) weights[p] = 0.0f;
    return kNegInf;
  }
  float total = 0.0f;
  for (std::size_t p = 0; p < parts; ++p) {
    weights[p] = lse[p] == kNegInf ? 0.0f : std::exp(lse[p] - m);
    total += weights[p];
  }
  for (std::size_t p = 0; p < parts; ++p) weights[p] /= total;
  return m + std::log(total);
}

}  // namespace salience::kernels
