// The vectorized GELU against the exact formula in double precision.
#include "model/gelu.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace salience::model {
namespace {

double ExactGelu(double z) {
  return 0.5 * z * (1.0 + std::erf(z / std::sqrt(2.0)));
}

TEST(Gelu, WithinTwoMillionthsOfTheExactFormula) {
  // -12..12 in steps of 1e-3, plus a length that leaves a vector tail.
  std::vector<float> x;
  for (int i = -12000; i <= 12000; ++i) x.push_back(i * 1e-3f);
  x.push_back(0.3f);
  const std::vector<float> input = x;
  BiasGeluInPlace(x.data(), 1, static_cast<std::int64_t>(x.size()), nullptr);
  double worst = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, std::abs(x[i] - ExactGelu(input[i])));
  EXPECT_LE(worst, 2e-6);
}

TEST(Gelu, BiasPerColumnTailsAndEmpty) {
  for (int cols : {0, 1, 3, 7, 17, 1537}) {
    const int rows = 3;
    std::vector<float> x(rows * cols + 1, 1.0f), bias(cols);
    for (int c = 0; c < cols; ++c) bias[c] = 0.01f * c - 0.5f;
    x[rows * cols] = 42.0f;  // guard value past the end
    BiasGeluInPlace(x.data(), rows, cols, bias.data());
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c)
        EXPECT_NEAR(x[r * cols + c], ExactGelu(1.0 + bias[c]), 2e-6);
    EXPECT_EQ(x[rows * cols], 42.0f);
  }
}

}  // namespace
}  // namespace salience::model
