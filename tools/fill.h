// Random inputs for `salience bench` and `salience check`: standard normal
// values, reproducible from a seed whatever the thread count (each chunk of
// 64K elements draws from its own generator).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>

namespace salience::tools {

inline void FillNormal(float* data, std::size_t count, std::uint64_t seed) {
  constexpr std::size_t kChunk = std::size_t{1} << 16;
  const std::int64_t chunks =
      static_cast<std::int64_t>((count + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    std::mt19937_64 engine(seed * 0x9E3779B97F4A7C15ULL +
                           static_cast<std::uint64_t>(c));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::size_t begin = static_cast<std::size_t>(c) * kChunk;
    const std::size_t end = begin + kChunk < count ? begin + kChunk : count;
    for (std::size_t i = begin; i < end; ++i) data[i] = normal(engine);
  }
}

}  // namespace salience::tools
