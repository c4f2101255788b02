// Row loads and stores of f32, bf16 and f16 tensors in fp32, per target.
//
// Every read of q, k, v and every write of out goes through ReadRow /
// WriteRow, so the kernel's arithmetic is fp32 whatever the caller's dtypes:
// a 16-bit row is first gathered (any stride) into a small aligned buffer,
// then widened a vector at a time (bf16 by a shift, f16 by F16C's vcvtph2ps
// on x86), and narrowed the same way on the way out, rounding to nearest
// even.

#if defined(SALIENCE_KERNELS_SIMD_CONVERT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_CONVERT_INL_H_
#undef SALIENCE_KERNELS_SIMD_CONVERT_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_CONVERT_INL_H_
#endif

#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "hwy/highway.h"
#include "kernels/simd/tiles-inl.h"
#include "salience/attention.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// dst[c] = scale * src[c * src_stride] for c < n; the unit-stride case is a
// separate loop so the compiler vectorizes it.
inline void GatherScaled(const float* src, std::int64_t src_stride,
                         std::int64_t n, float scale, float* dst) {
  if (src_stride == 1) {
    for (std::int64_t c = 0; c < n; ++c) dst[c] = src[c] * scale;
    return;
  }
  for (std::int64_t c = 0; c < n; ++c) dst[c] = src[c * src_stride] * scale;
}

// Room for one row of up to kMaxHeadDim elements in whole vectors.
inline constexpr std::size_t kRowBuffer = kMaxHeadDim + TileTraits::kLanes;

// dst[c] = scale * src[c] for c < n, src holding 16-bit floats of type T
// (hwy::bfloat16_t or hwy::float16_t) in a buffer of whole vectors.
template <typename T>
HWY_INLINE void WidenRow(const std::uint16_t* HWY_RESTRICT src, std::size_t n,
                         float scale, float* HWY_RESTRICT dst) {
  const DF d;
  const hn::Rebind<T, DF> dh;
  constexpr std::size_t N = TileTraits::kLanes;
  HWY_ALIGN float widened[kRowBuffer];
  const VF factor = hn::Set(d, scale);
  for (std::size_t c = 0; c < n; c += N) {
    const auto half = hn::LoadU(dh, reinterpret_cast<const T*>(src + c));
    hn::Store(hn::Mul(hn::PromoteTo(d, half), factor), d, widened + c);
  }
  std::memcpy(dst, widened, n * sizeof(float));
}

// dst[c] = scale * t[offset + c * t.strides[3]] for c < n, in fp32.
inline void ReadRow(const TensorView& t, std::int64_t offset, std::int64_t n,
                    float scale, float* dst) {
  const std::int64_t stride = t.strides[3];
  if (t.dtype == DType::kF32) {
    GatherScaled(static_cast<const float*>(t.data) + offset, stride, n, scale,
                 dst);
    return;
  }
  HWY_ALIGN std::uint16_t bits[kRowBuffer] = {};
  const auto* src = static_cast<const std::uint16_t*>(t.data) + offset;
  for (std::int64_t c = 0; c < n; ++c) bits[c] = src[c * stride];
  const auto count = static_cast<std::size_t>(n);
  if (t.dtype == DType::kBF16) {
    WidenRow<hwy::bfloat16_t>(bits, count, scale, dst);
  } else {
    WidenRow<hwy::float16_t>(bits, count, scale, dst);
  }
}

// t[offset + c * t.strides[3]] = scale * src[c] for c < n, rounded to the
// tensor's dtype. bf16 rounds in integer arithmetic (core::BF16FromF32, which
// the compiler vectorizes); f16 uses the target's DemoteTo.
inline void WriteRow(const float* src, std::int64_t n, float scale,
                     const TensorView& t, std::int64_t offset) {
  const std::int64_t stride = t.strides[3];
  if (t.dtype == DType::kF32) {
    float* dst = static_cast<float*>(t.data) + offset;
    for (std::int64_t c = 0; c < n; ++c) dst[c * stride] = src[c] * scale;
    return;
  }
  const DF d;
  const hn::Rebind<hwy::float16_t, DF> dh;
  constexpr std::size_t N = TileTraits::kLanes;
  HWY_ALIGN float scaled[kRowBuffer] = {};
  HWY_ALIGN std::uint16_t bits[kRowBuffer];
  for (std::int64_t c = 0; c < n; ++c) scaled[c] = src[c] * scale;
  if (t.dtype == DType::kBF16) {
    for (std::int64_t c = 0; c < n; ++c) bits[c] = core::BF16FromF32(scaled[c]);
  } else {
    for (std::int64_t c = 0; c < n; c += N) {
      hn::StoreU(hn::DemoteTo(dh, hn::Load(d, scaled + c)), dh,
                 reinterpret_cast<hwy::float16_t*>(bits + c));
    }
  }
  auto* dst = static_cast<std::uint16_t*>(t.data) + offset;
  for (std::int64_t c = 0; c < n; ++c) dst[c * stride] = bits[c];
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_CONVERT_INL_H_
