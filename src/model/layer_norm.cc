#include "model/layer_norm.h"

#include <cmath>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "model/layer_norm.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace salience::model {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One row: full vectors, then the remaining width % lanes values one by one.
void BiasLayerNormRow(float* HWY_RESTRICT x, const float* HWY_RESTRICT bias,
                      std::int64_t width, const float* HWY_RESTRICT gamma,
                      const float* HWY_RESTRICT beta, float eps) {
  const hn::ScalableTag<float> d;
  const std::int64_t lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const std::int64_t vector_end = width - width % lanes;

  // The sum runs over v - v[0]: its error then scales with the row's spread,
  // not with its distance from zero.
  const float shift = x[0] + (bias != nullptr ? bias[0] : 0.0f);
  const auto shift_vector = hn::Set(d, shift);
  auto sum = hn::Zero(d);
  for (std::int64_t c = 0; c < vector_end; c += lanes) {
    auto v = hn::LoadU(d, x + c);
    if (bias != nullptr) v = hn::Add(v, hn::LoadU(d, bias + c));
    hn::StoreU(v, d, x + c);
    sum = hn::Add(sum, hn::Sub(v, shift_vector));
  }
  float total = hn::GetLane(hn::SumOfLanes(d, sum));
  for (std::int64_t c = vector_end; c < width; ++c) {
    if (bias != nullptr) x[c] += bias[c];
    total += x[c] - shift;
  }
  const float mean = shift + total / static_cast<float>(width);

  const auto mean_vector = hn::Set(d, mean);
  auto squares = hn::Zero(d);
  for (std::int64_t c = 0; c < vector_end; c += lanes) {
    const auto centered = hn::Sub(hn::LoadU(d, x + c), mean_vector);
    squares = hn::MulAdd(centered, centered, squares);
  }
  float squares_total = hn::GetLane(hn::SumOfLanes(d, squares));
  for (std::int64_t c = vector_end; c < width; ++c)
    squares_total += (x[c] - mean) * (x[c] - mean);
  const float variance = squares_total / static_cast<float>(width);
  const float inv_std =
      static_cast<float>(1.0 / std::sqrt(static_cast<double>(variance) + eps));

  // (v - mean) * inv_std * gamma + beta
  const auto inv_std_vector = hn::Set(d, inv_std);
  for (std::int64_t c = 0; c < vector_end; c += lanes) {
    const auto normalized =
        hn::Mul(hn::Sub(hn::LoadU(d, x + c), mean_vector), inv_std_vector);
    hn::StoreU(
        hn::MulAdd(normalized, hn::LoadU(d, gamma + c), hn::LoadU(d, beta + c)),
        d, x + c);
  }
  for (std::int64_t c = vector_end; c < width; ++c)
    x[c] = (x[c] - mean) * inv_std * gamma[c] + beta[c];
}

}  // namespace HWY_NAMESPACE
}  // namespace salience::model
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace salience::model {

HWY_EXPORT(BiasLayerNormRow);

void BiasLayerNormInPlace(float* x, std::int64_t rows, std::int64_t width,
                          const float* bias, const float* gamma,
                          const float* beta, float eps) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) HWY_DYNAMIC_DISPATCH(BiasLayerNormRow)
  (x + r * width, bias, width, gamma, beta, eps);
}

}  // namespace salience::model
#endif  // HWY_ONCE
