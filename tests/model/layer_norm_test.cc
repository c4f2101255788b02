// The vectorized bias + LayerNorm against a plain one in double precision,
// on every SIMD target this build compiles and the CPU runs.
#include "model/layer_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/simd/forward.h"

namespace salience::model {
namespace {

// y = (v - mean) / sqrt(var + eps) * gamma + beta, v = x + bias, in double.
std::vector<double> ReferenceRow(const float* x, const float* bias,
                                 std::int64_t width, const float* gamma,
                                 const float* beta, double eps) {
  std::vector<double> v(width);
  double mean = 0.0;
  for (std::int64_t c = 0; c < width; ++c) {
    v[c] = static_cast<double>(x[c]) + (bias != nullptr ? bias[c] : 0.0);
    mean += v[c];
  }
  mean /= width;
  double variance = 0.0;
  for (std::int64_t c = 0; c < width; ++c)
    variance += (v[c] - mean) * (v[c] - mean);
  variance /= width;
  for (std::int64_t c = 0; c < width; ++c)
    v[c] = (v[c] - mean) / std::sqrt(variance + eps) * gamma[c] + beta[c];
  return v;
}

TEST(LayerNorm, MatchesDoubleReferenceOnEveryTarget) {
  const int rows = 5;
  for (const std::int64_t target : simd::RunnableTargets()) {
    simd::ScopedTarget only(target);
    for (int width : {1, 3, 16, 17, 33, 384, 1000}) {
      for (const bool with_bias : {false, true}) {
        // Rows far from zero mean with a small spread: a one-pass variance
        // (E[v^2] - mean^2) in fp32 would lose most of its digits here.
        std::vector<float> x(rows * width + 1), bias(width), gamma(width),
            beta(width);
        for (int c = 0; c < width; ++c) {
          bias[c] = 0.25f * std::sin(0.7f * c);
          gamma[c] = 1.0f + 0.1f * std::cos(0.3f * c);
          beta[c] = 0.05f * c / width - 0.02f;
        }
        for (int r = 0; r < rows; ++r)
          for (int c = 0; c < width; ++c)
            x[r * width + c] = 40.0f * (r - 2) + std::sin(1.3f * c + r);
        x[rows * width] = 42.0f;  // guard value past the end
        const std::vector<float> input = x;
        const float* bias_or_null = with_bias ? bias.data() : nullptr;
        BiasLayerNormInPlace(x.data(), rows, width, bias_or_null, gamma.data(),
                             beta.data(), 1e-12f);
        double worst = 0.0;
        for (int r = 0; r < rows; ++r) {
          const std::vector<double> expected =
              ReferenceRow(input.data() + r * width, bias_or_null, width,
                           gamma.data(), beta.data(), 1e-12);
          for (int c = 0; c < width; ++c)
            worst = std::max(worst, std::abs(x[r * width + c] - expected[c]));
        }
        // A width-1 row normalizes to 0 (then beta): v - mean is exactly 0.
        EXPECT_LE(worst, 2e-5) << simd::TargetName(target) << " width " << width
                               << " bias " << with_bias;
        EXPECT_EQ(x[rows * width], 42.0f);
      }
    }
  }
}

TEST(LayerNorm, KnownValues) {
  // v = [1, 2, 3, 6]: mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5.
  std::vector<float> x = {0.0f, 1.0f, 2.0f, 5.0f};
  const std::vector<float> bias(4, 1.0f), gamma = {1.0f, 2.0f, 1.0f, 0.5f},
                                          beta = {0.0f, 0.0f, 1.0f, 0.0f};
  BiasLayerNormInPlace(x.data(), 1, 4, bias.data(), gamma.data(), beta.data(),
                       0.0f);
  const double inv_std = 1.0 / std::sqrt(3.5);
  EXPECT_NEAR(x[0], -2.0 * inv_std, 1e-6);
  EXPECT_NEAR(x[1], -2.0 * inv_std, 1e-6);
  EXPECT_NEAR(x[2], 1.0, 1e-6);
  EXPECT_NEAR(x[3], 1.5 * inv_std, 1e-6);
}

}  // namespace
}  // namespace salience::model
