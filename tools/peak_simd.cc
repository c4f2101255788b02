// Per-target inner loops of the peak probe (Highway skeleton shape: this
// file is compiled once per target in HWY_TARGETS, the entry points at the
// bottom dispatch at run time).
#include "tools/peak_simd.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "tools/peak_simd.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#if HWY_TARGET == HWY_AVX3
#include <immintrin.h>
#endif

HWY_BEFORE_NAMESPACE();
namespace salience::tools {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Independent accumulator chains. A core keeps latency x pipes FMAs in
// flight (4 cycles x 2 pipes = 8 on Zen 4/5 and recent Intel cores); 12
// chains cover that with margin and, with the two constants, still fit the
// 16 vector registers of AVX2 without spilling.
constexpr int kFmaChains = 12;

std::int64_t FmaFlopsPerIteration() {
  const hn::ScalableTag<float> d;
  return static_cast<std::int64_t>(kFmaChains * hn::Lanes(d) * 2);
}

float RunFmaChains(std::int64_t iterations) {
  const hn::ScalableTag<float> d;
  using V = hn::Vec<decltype(d)>;
  // acc = acc * 0.999 + 0.001 converges to 1: no overflow, no denormals.
  const V mul = hn::Set(d, 0.999f);
  const V add = hn::Set(d, 0.001f);
  V acc[kFmaChains];
#pragma GCC unroll 16
  for (int c = 0; c < kFmaChains; ++c) acc[c] = hn::Set(d, 0.5f + 0.01f * c);
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int c = 0; c < kFmaChains; ++c) acc[c] = hn::MulAdd(acc[c], mul, add);
  }
  V total = acc[0];
#pragma GCC unroll 16
  for (int c = 1; c < kFmaChains; ++c) total = hn::Add(total, acc[c]);
  return hn::GetLane(hn::SumOfLanes(d, total));
}

#if HWY_TARGET == HWY_AVX3
// vdpbf16ps chains (AVX512_BF16): each instruction does two bf16 products
// and two adds per fp32 lane, 4 x 16 flops. Highway 1.0 has no such op,
// hence the intrinsic under a function target attribute; callers check the
// CPUID bit first (simd::CpuHasDotBf16). acc grows by 2 * 2^-10 * 2^-10 per
// iteration: no overflow within any probe's length.
std::int64_t DotBf16FlopsPerIteration() { return kFmaChains * 16 * 4; }

__attribute__((target("avx512bf16,avx512f,avx512vl,avx512bw"))) float RunDotBf16Chains(
    std::int64_t iterations) {
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3a80);  // bf16 2^-10
  __m512 acc[kFmaChains];
#pragma GCC unroll 16
  for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm512_set1_ps(0.01f * c);
  for (std::int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int c = 0; c < kFmaChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, a);
  }
  __m512 total = acc[0];
#pragma GCC unroll 16
  for (int c = 1; c < kFmaChains; ++c) total = _mm512_add_ps(total, acc[c]);
  return _mm512_reduce_add_ps(total);
}
#else
// No bf16 dot product on this target.
std::int64_t DotBf16FlopsPerIteration() { return 0; }
float RunDotBf16Chains(std::int64_t) { return 0.0f; }
#endif

float SumFloats(const float* HWY_RESTRICT data, std::size_t count) {
  const hn::ScalableTag<float> d;
  const std::size_t lanes = hn::Lanes(d);
  // Four accumulators keep several loads in flight per core; the loop is
  // bound by memory, not by the adds.
  auto sum0 = hn::Zero(d), sum1 = hn::Zero(d), sum2 = hn::Zero(d),
       sum3 = hn::Zero(d);
  std::size_t i = 0;
  for (; i + 4 * lanes <= count; i += 4 * lanes) {
    sum0 = hn::Add(sum0, hn::LoadU(d, data + i));
    sum1 = hn::Add(sum1, hn::LoadU(d, data + i + lanes));
    sum2 = hn::Add(sum2, hn::LoadU(d, data + i + 2 * lanes));
    sum3 = hn::Add(sum3, hn::LoadU(d, data + i + 3 * lanes));
  }
  float tail = 0.0f;
  for (; i < count; ++i) tail += data[i];
  const auto sum = hn::Add(hn::Add(sum0, sum1), hn::Add(sum2, sum3));
  return hn::GetLane(hn::SumOfLanes(d, sum)) + tail;
}

}  // namespace HWY_NAMESPACE
}  // namespace salience::tools
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace salience::tools {

HWY_EXPORT(FmaFlopsPerIteration);
HWY_EXPORT(RunFmaChains);
HWY_EXPORT(SumFloats);
HWY_EXPORT(DotBf16FlopsPerIteration);
HWY_EXPORT(RunDotBf16Chains);

std::int64_t FmaFlopsPerIteration() {
  return HWY_DYNAMIC_DISPATCH(FmaFlopsPerIteration)();
}

float RunFmaChains(std::int64_t iterations) {
  return HWY_DYNAMIC_DISPATCH(RunFmaChains)(iterations);
}

float SumFloats(const float* data, std::size_t count) {
  return HWY_DYNAMIC_DISPATCH(SumFloats)(data, count);
}

std::int64_t DotBf16FlopsPerIteration() {
  return HWY_DYNAMIC_DISPATCH(DotBf16FlopsPerIteration)();
}

float RunDotBf16Chains(std::int64_t iterations) {
  return HWY_DYNAMIC_DISPATCH(RunDotBf16Chains)(iterations);
}

}  // namespace salience::tools
#endif  // HWY_ONCE
