// Attention rollout: identity attention rolls out to the identity, rows stay
// stochastic, and one layer gives (mean + I) / 2.
#include "model/rollout.h"

#include <gtest/gtest.h>

namespace salience::model {
namespace {

TEST(Rollout, OneLayerIsHalfMeanPlusHalfIdentity) {
  // Two heads over n = 2: head 0 attends to token 0, head 1 to token 1.
  const std::vector<std::vector<float>> layers = {{1, 0, 1, 0, 0, 1, 0, 1}};
  const auto r = AttentionRollout(layers, 2, 2);
  EXPECT_NEAR(r[0], 0.75, 1e-6);  // 0.5 * 0.5 + 0.5
  EXPECT_NEAR(r[1], 0.25, 1e-6);
  EXPECT_NEAR(r[2], 0.25, 1e-6);
  EXPECT_NEAR(r[3], 0.75, 1e-6);
}

TEST(Rollout, RowsStayStochasticAcrossLayers) {
  const std::int64_t n = 3;
  std::vector<float> uniform(n * n, 1.0f / n), shift(n * n, 0.0f);
  for (std::int64_t i = 0; i < n; ++i) shift[i * n + (i + 1) % n] = 1.0f;
  const auto r = AttentionRollout({uniform, shift, uniform}, 1, n);
  for (std::int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (std::int64_t j = 0; j < n; ++j) sum += r[i * n + j];
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
}

TEST(Rollout, NoLayersIsIdentity) {
  const auto r = AttentionRollout({}, 1, 2);
  EXPECT_EQ(r, (std::vector<float>{1, 0, 0, 1}));
}

}  // namespace
}  // namespace salience::model
