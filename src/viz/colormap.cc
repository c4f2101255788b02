#include "viz/colormap.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace salience::viz {
namespace {

// viridis sampled at t = 0, 1/8, ..., 1 (matplotlib's _viridis_data);
// linear interpolation between samples is within 2/255 of the full table.
constexpr Rgb kViridis[9] = {
    {68, 1, 84},    {71, 44, 122},  {59, 81, 139},
    {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
    {92, 200, 99},  {170, 220, 50}, {253, 231, 37},
};

}  // namespace

Rgb Viridis(float t) {
  t = std::clamp(std::isnan(t) ? 0.0f : t, 0.0f, 1.0f) * 8.0f;
  const int i = std::min(static_cast<int>(t), 7);
  const float f = t - static_cast<float>(i);
  const auto mix = [f](std::uint8_t a, std::uint8_t b) {
    return static_cast<std::uint8_t>(std::lround(a + (b - a) * f));
  };
  return {mix(kViridis[i].r, kViridis[i + 1].r),
          mix(kViridis[i].g, kViridis[i + 1].g),
          mix(kViridis[i].b, kViridis[i + 1].b)};
}

Rgb WeightColor(float weight, float max_weight) {
  if (max_weight <= 0.0f) return Viridis(0.0f);
  return Viridis(std::sqrt(std::max(weight, 0.0f) / max_weight));
}

std::string HexColor(Rgb color) {
  char text[8];
  std::snprintf(text, sizeof text, "#%02x%02x%02x", color.r, color.g, color.b);
  return text;
}

}  // namespace salience::viz
