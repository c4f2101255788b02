// What the heatmap writers draw: the attention maps of one text, for a
// chosen set of layers and heads, and the rollout summary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace salience::viz {

struct AttentionReport {
  std::string text;                 // the input sentence (title)
  std::vector<std::string> tokens;  // n labels, [CLS] ... [SEP]
  std::int64_t model_layers = 0;    // of the model, for the captions
  std::int64_t model_heads = 0;
  std::vector<int> layers, heads;  // the maps' layers and heads
  // maps[li * heads.size() + hi]: [n, n] row-major, row = query (from),
  // column = key (to); rows sum to 1.
  std::vector<std::vector<float>> maps;
  std::vector<float> rollout;  // [n, n] or empty

  std::int64_t n() const { return static_cast<std::int64_t>(tokens.size()); }
  const std::vector<float>& Map(std::size_t li, std::size_t hi) const {
    return maps[li * heads.size() + hi];
  }
};

}  // namespace salience::viz
