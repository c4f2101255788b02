// Scalar conversions between fp32 and the two 16-bit float formats, on their
// bit patterns (uint16), rounding to nearest even. Exact where the format
// allows (every bf16 and f16 value is an fp32 value). Used where a value is
// touched once (the reference, stores of a few elements, tests); the fast
// kernel converts whole rows with vector instructions.
#pragma once

#include <cstdint>
#include <cstring>

#include "salience/tensor.h"

namespace salience::core {

inline float F32FromBits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline std::uint32_t BitsFromF32(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// bf16 is the upper half of an fp32.
inline float F32FromBF16(std::uint16_t h) {
  return F32FromBits(std::uint32_t{h} << 16);
}

inline std::uint16_t BF16FromF32(float f) {
  const std::uint32_t bits = BitsFromF32(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it quiet NaN
    return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  }
  const std::uint32_t round = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + round) >> 16);
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
inline float F32FromF16(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t{h & 0x8000u} << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) {  // inf, NaN
    return F32FromBits(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent == 0) {  // zero, subnormal: mantissa * 2^-24
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  return F32FromBits(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

inline std::uint16_t F16FromF32(float f) {
  const std::uint32_t bits = BitsFromF32(f);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (magnitude >= 0x477ff000u) return sign | 0x7c00u;  // rounds to inf
  if (magnitude < 0x38800000u) {
    // Subnormal or zero in f16: units of 2^-24, rounded to nearest even by
    // the fp32 addition of 0.5 (2^-25 * 2^24 / 2^24).
    const float scaled = F32FromBits(magnitude) * 0x1p24f;
    const float rounded = (scaled + 0x1p23f) - 0x1p23f;
    return sign | static_cast<std::uint16_t>(rounded);
  }
  // Normal: rebias the exponent, round the 13 dropped bits to nearest even.
  const std::uint32_t rebased = magnitude - (112u << 23);
  const std::uint32_t round = 0xfffu + ((rebased >> 13) & 1u);
  return sign | static_cast<std::uint16_t>((rebased + round) >> 13);
}

// Element `offset` of a float tensor (f32, bf16 or f16), widened to fp32.
inline float LoadFloat(const TensorView& t, std::int64_t offset) {
  switch (t.dtype) {
    case DType::kBF16:
      return F32FromBF16(static_cast<const std::uint16_t*>(t.data)[offset]);
    case DType::kF16:
      return F32FromF16(static_cast<const std::uint16_t*>(t.data)[offset]);
    default:
      return static_cast<const float*>(t.data)[offset];
  }
}

// Stores `value` at element `offset`, rounded to the tensor's dtype.
inline void StoreFloat(const TensorView& t, std::int64_t offset, float value) {
  switch (t.dtype) {
    case DType::kBF16:
      static_cast<std::uint16_t*>(t.data)[offset] = BF16FromF32(value);
      return;
    case DType::kF16:
      static_cast<std::uint16_t*>(t.data)[offset] = F16FromF32(value);
      return;
    default:
      static_cast<float*>(t.data)[offset] = value;
  }
}

}  // namespace salience::core
