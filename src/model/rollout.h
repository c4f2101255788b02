// Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
// Transformers"): how much each output token draws on each input token
// through all layers, counting the residual connection as attention to
// oneself.
//
//   A_l  = mean over heads of layer l's attention           [n, n]
//   Â_l  = (A_l + I) / 2, rows renormalized to sum to 1
//   R    = Â_L · Â_{L-1} · ... · Â_1
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace salience::model {

// layers[l] holds num_heads maps of [n, n] row-major, head-major
// ([heads, n, n]); returns R, [n, n] row-major.
std::vector<float> AttentionRollout(
    const std::vector<std::vector<float>>& layers, std::int64_t num_heads,
    std::int64_t n);

}  // namespace salience::model
