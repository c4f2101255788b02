#include "model/gelu.h"

#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "model/gelu.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace salience::model {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// GELU of one vector; see gelu.h for the erf approximation.
template <class D, class V>
HWY_INLINE V GeluVector(D d, V z) {
  const V half = hn::Set(d, 0.5f);
  const V x = hn::Clamp(hn::Mul(z, hn::Set(d, 0.70710678118654752f)),
                        hn::Set(d, -4.0f), hn::Set(d, 4.0f));
  const V x2 = hn::Mul(x, x);
  V p = hn::Set(d, -2.72614225801306e-10f);
  p = hn::MulAdd(p, x2, hn::Set(d, 2.77068142495902e-08f));
  p = hn::MulAdd(p, x2, hn::Set(d, -2.10102402082508e-06f));
  p = hn::MulAdd(p, x2, hn::Set(d, -5.69250639462346e-05f));
  p = hn::MulAdd(p, x2, hn::Set(d, -7.34990630326855e-04f));
  p = hn::MulAdd(p, x2, hn::Set(d, -2.95459980854025e-03f));
  p = hn::MulAdd(p, x2, hn::Set(d, -1.60960333262415e-02f));
  p = hn::Mul(p, x);
  V q = hn::Set(d, -1.45660718464996e-05f);
  q = hn::MulAdd(q, x2, hn::Set(d, -2.13374055278905e-04f));
  q = hn::MulAdd(q, x2, hn::Set(d, -1.68282697438203e-03f));
  q = hn::MulAdd(q, x2, hn::Set(d, -7.37332916720468e-03f));
  q = hn::MulAdd(q, x2, hn::Set(d, -1.42647390514189e-02f));
  const V erf = hn::Div(p, q);
  return hn::Mul(hn::Mul(half, z), hn::Add(hn::Set(d, 1.0f), erf));
}

// One row: x[c] = GELU(x[c] + bias[c]).
void BiasGeluRow(float* HWY_RESTRICT x, const float* HWY_RESTRICT bias,
                 std::int64_t count) {
  const hn::ScalableTag<float> d;
  const std::int64_t lanes = static_cast<std::int64_t>(hn::Lanes(d));
  const auto load_bias = [&](std::int64_t i) {
    return bias != nullptr ? hn::LoadU(d, bias + i) : hn::Zero(d);
  };
  std::int64_t i = 0;
  for (; i + lanes <= count; i += lanes)
    hn::StoreU(GeluVector(d, hn::Add(hn::LoadU(d, x + i), load_bias(i))), d,
               x + i);
  if (i < count) {  // the tail through zero-padded vectors: same math
    HWY_ALIGN float tail[hn::MaxLanes(d)] = {};
    HWY_ALIGN float tail_bias[hn::MaxLanes(d)] = {};
    std::memcpy(tail, x + i, (count - i) * sizeof(float));
    if (bias != nullptr)
      std::memcpy(tail_bias, bias + i, (count - i) * sizeof(float));
    hn::Store(GeluVector(d, hn::Add(hn::Load(d, tail), hn::Load(d, tail_bias))),
              d, tail);
    std::memcpy(x + i, tail, (count - i) * sizeof(float));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace salience::model
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace salience::model {

HWY_EXPORT(BiasGeluRow);

void BiasGeluInPlace(float* x, std::int64_t rows, std::int64_t cols,
                     const float* bias) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r)
    HWY_DYNAMIC_DISPATCH(BiasGeluRow)(x + r * cols, bias, cols);
}

}  // namespace salience::model
#endif  // HWY_ONCE
