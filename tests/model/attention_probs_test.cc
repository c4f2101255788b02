// AttentionProbabilities (p = exp(scale q.k - lse)) against an explicit
// softmax on random data, with the lse from salience's fused kernel.
#include "model/attention_probs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "salience/attention.h"

namespace salience::model {
namespace {

TEST(AttentionProbabilities, MatchesExplicitSoftmax) {
  constexpr std::int64_t kSeq = 37, kHeads = 3, kDim = 16;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> q(kSeq * kHeads * kDim), k(q.size()), v(q.size()),
      out(q.size()), lse(kHeads * kSeq);
  for (auto* buffer : {&q, &k, &v})
    for (float& x : *buffer) x = normal(rng);
  const auto view = [&](std::vector<float>& data) {
    return TensorView::Bnhd(data.data(), DType::kF32, 1, kSeq, kHeads, kDim);
  };
  const TensorView lse_view =
      TensorView::Contiguous(lse.data(), DType::kF32, 3, {1, kHeads, kSeq, 0});
  AttentionOptions options;
  ASSERT_TRUE(
      AttentionForward(view(q), view(k), view(v), view(out), options, &lse_view)
          .ok());

  const float scale = 1.0f / std::sqrt(float(kDim));
  const std::vector<int> heads = {2, 0};
  std::vector<float> probs(heads.size() * kSeq * kSeq);
  ASSERT_TRUE(
      AttentionProbabilities(view(q), view(k), lse_view, scale, heads, probs)
          .ok());
  for (std::size_t h = 0; h < heads.size(); ++h) {
    for (std::int64_t i = 0; i < kSeq; ++i) {
      std::vector<double> scores(kSeq);
      double max_score = -1e300, sum = 0;
      for (std::int64_t j = 0; j < kSeq; ++j) {
        double dot = 0;
        for (std::int64_t d = 0; d < kDim; ++d)
          dot += double(q[(i * kHeads + heads[h]) * kDim + d]) *
                 k[(j * kHeads + heads[h]) * kDim + d];
        scores[j] = scale * dot;
        max_score = std::max(max_score, scores[j]);
      }
      for (double& s : scores) sum += (s = std::exp(s - max_score));
      for (std::int64_t j = 0; j < kSeq; ++j)
        EXPECT_NEAR(probs[(h * kSeq + i) * kSeq + j], scores[j] / sum, 2e-6);
    }
  }
}

TEST(AttentionProbabilities, ValidatesArguments) {
  std::vector<float> data(64), lse(8), out(64);
  const TensorView q = TensorView::Bnhd(data.data(), DType::kF32, 1, 4, 2, 8);
  const TensorView l =
      TensorView::Contiguous(lse.data(), DType::kF32, 3, {1, 2, 4, 0});
  const std::vector<int> bad_head = {2};
  EXPECT_FALSE(AttentionProbabilities(q, q, l, 1.0f, bad_head, out).ok());
  const std::vector<int> heads = {0, 1};
  std::vector<float> small(10);
  EXPECT_FALSE(AttentionProbabilities(q, q, l, 1.0f, heads, small).ok());
  EXPECT_TRUE(AttentionProbabilities(q, q, l, 1.0f, heads, out).ok());
}

}  // namespace
}  // namespace salience::model
