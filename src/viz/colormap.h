// The colour scale of every heatmap: viridis (perceptually uniform, legible
// in greyscale and to colour-blind readers), and the square-root scaling
// that keeps small attention weights visible next to the [CLS]/[SEP] sinks.
#pragma once

#include <cstdint>
#include <string>

namespace salience::viz {

struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
};

// t in [0, 1] (clamped) to viridis.
Rgb Viridis(float t);
// A weight in [0, max_weight] to a colour, sqrt-scaled.
Rgb WeightColor(float weight, float max_weight);
// "#rrggbb".
std::string HexColor(Rgb color);

}  // namespace salience::viz
