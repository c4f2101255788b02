#include "model/rollout.h"

namespace salience::model {

std::vector<float> AttentionRollout(
    const std::vector<std::vector<float>>& layers, std::int64_t num_heads,
    std::int64_t n) {
  // R starts as the identity; each layer multiplies from the left.
  std::vector<double> rollout(n * n, 0.0), layer_map(n * n), product(n * n);
  for (std::int64_t i = 0; i < n; ++i) rollout[i * n + i] = 1.0;
  for (const std::vector<float>& layer : layers) {
    for (std::int64_t i = 0; i < n; ++i) {
      double row_sum = 0.0;
      for (std::int64_t j = 0; j < n; ++j) {
        double mean = 0.0;
        for (std::int64_t h = 0; h < num_heads; ++h)
          mean += layer[(h * n + i) * n + j];
        mean /= static_cast<double>(num_heads);
        layer_map[i * n + j] = 0.5 * mean + (i == j ? 0.5 : 0.0);
        row_sum += layer_map[i * n + j];
      }
      for (std::int64_t j = 0; j < n; ++j)
        layer_map[i * n + j] =
            row_sum > 0 ? layer_map[i * n + j] / row_sum : 0.0;
    }
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double sum = 0.0;
        for (std::int64_t m = 0; m < n; ++m)
          sum += layer_map[i * n + m] * rollout[m * n + j];
        product[i * n + j] = sum;
      }
    rollout.swap(product);
  }
  return std::vector<float>(rollout.begin(), rollout.end());
}

}  // namespace salience::model
