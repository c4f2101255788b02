// Per-target building blocks of the fused forward: tile traits, the two
// register-blocked micro-kernels (S = Q K^T and O += P V) and the exp used by
// the online softmax. Compiled once per SIMD target (Highway's foreach_target
// re-includes this file); callers above the dispatch boundary never see
// vector types.

#if defined(SALIENCE_KERNELS_SIMD_TILES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_TILES_INL_H_
#undef SALIENCE_KERNELS_SIMD_TILES_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_TILES_INL_H_
#endif

#include <cstddef>

#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Tile shapes, chosen so the accumulators of each micro-kernel fill most of
// the register file without spilling: AVX-512 has 32 vector registers, so
// 6 rows x 4 vectors = 24 accumulators plus 4 operand registers and a
// broadcast; AVX2 has 16, so 6 x 2 = 12. Six rows per micro-tile keep
// 10 loads per 24 FMAs (AVX-512), under the two loads a cycle the cores
// issue next to two FMAs.
struct TileTraits {
  static constexpr std::size_t kLanes = hn::MaxLanes(DF());
  static constexpr std::size_t kMicroRows = 6;
  static constexpr std::size_t kMicroVecs = (kLanes == 8) ? 2 : 4;
  // Keys per packed K/V block: one micro-tile's width of scores.
  static constexpr std::size_t kKvBlock = kMicroVecs * kLanes;
  // Query rows per work item: a multiple of kMicroRows (and of the lanes,
  // see below). 96 rows x 128 dims of Q (48 KiB), the 96 x 64 score tile
  // (24 KiB), the output tile (48 KiB) and one packed K or V block (32 KiB at
  // head_dim 128) stay in L2 (1-2 MiB) while the block loop streams K and V;
  // each packed block is used by 16 row groups before the next is loaded.
  // Measured against 48 rows on Zen 5: causal N=4096 D=64 69% -> 71% of
  // peak, causal N=1024 57% -> 64% (fewer, longer items amortize loading Q
  // and writing O); a 512-key sliding window loses 2 points.
  static constexpr std::size_t kQTileRows = 16 * kMicroRows;
  // Scratch tiles are carved from one aligned buffer in kQTileRows-row
  // slabs; this keeps every slab vector aligned.
  static_assert(kQTileRows % kLanes == 0);
};

// S[r][0 .. kVecs*N) = Q[r][:] . K^T[:][0 .. kVecs*N) for kRows rows.
// q rows are `q_stride` apart, kt is the packed block [depth][kv_block].
template <std::size_t kRows, std::size_t kVecs>
HWY_INLINE void QkMicroTile(const float* HWY_RESTRICT q, std::size_t q_stride,
                            const float* HWY_RESTRICT kt, std::size_t depth,
                            float* HWY_RESTRICT s, std::size_t s_stride) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes;
  constexpr std::size_t kBlock = TileTraits::kKvBlock;
  VF acc[kRows][kVecs];
  for (std::size_t r = 0; r < kRows; ++r) {
    for (std::size_t c = 0; c < kVecs; ++c) acc[r][c] = hn::Zero(d);
  }
  for (std::size_t k = 0; k < depth; ++k) {
    VF key[kVecs];
    for (std::size_t c = 0; c < kVecs; ++c) {
      key[c] = hn::Load(d, kt + k * kBlock + c * N);
    }
    for (std::size_t r = 0; r < kRows; ++r) {
      const VF query = hn::Set(d, q[r * q_stride + k]);
      for (std::size_t c = 0; c < kVecs; ++c) {
        acc[r][c] = hn::MulAdd(query, key[c], acc[r][c]);
      }
    }
  }
  for (std::size_t r = 0; r < kRows; ++r) {
    for (std::size_t c = 0; c < kVecs; ++c) {
      hn::Store(acc[r][c], d, s + r * s_stride + c * N);
    }
  }
}

// O[r][cols] = alpha[r] * O[r][cols] + sum_k P[r][k] * V[k][cols] for kRows
// rows and kVecs vectors of columns. The rescale by alpha (the online
// softmax's correction for a grown row max) rides on the accumulator load,
// so it costs no extra pass over O.
template <std::size_t kRows, std::size_t kVecs>
HWY_INLINE void PvMicroTile(const float* HWY_RESTRICT p, std::size_t p_stride,
                            std::size_t keys, const float* HWY_RESTRICT v,
                            std::size_t v_stride,
                            const float* HWY_RESTRICT alpha,
                            float* HWY_RESTRICT o, std::size_t o_stride) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes;
  VF acc[kRows][kVecs];
  for (std::size_t r = 0; r < kRows; ++r) {
    const VF scale = hn::Set(d, alpha[r]);
    for (std::size_t c = 0; c < kVecs; ++c) {
      acc[r][c] = hn::Mul(hn::Load(d, o + r * o_stride + c * N), scale);
    }
  }
  for (std::size_t k = 0; k < keys; ++k) {
    VF value[kVecs];
    for (std::size_t c = 0; c < kVecs; ++c) {
      value[c] = hn::Load(d, v + k * v_stride + c * N);
    }
    for (std::size_t r = 0; r < kRows; ++r) {
      const VF weight = hn::Set(d, p[r * p_stride + k]);
      for (std::size_t c = 0; c < kVecs; ++c) {
        acc[r][c] = hn::MulAdd(weight, value[c], acc[r][c]);
      }
    }
  }
  for (std::size_t r = 0; r < kRows; ++r) {
    for (std::size_t c = 0; c < kVecs; ++c) {
      hn::Store(acc[r][c], d, o + r * o_stride + c * N);
    }
  }
}

// Runs PvMicroTile over `vecs` column vectors, kMicroVecs at a time; the
// remainder (head_dim_v not a multiple of kMicroVecs vectors) goes to a
// narrower instantiation.
template <std::size_t kRows>
HWY_INLINE void PvRows(const float* p, std::size_t p_stride, std::size_t keys,
                       const float* v, std::size_t v_stride,
                       const float* alpha, float* o, std::size_t o_stride,
                       std::size_t vecs) {
  constexpr std::size_t N = TileTraits::kLanes;
  constexpr std::size_t kVecs = TileTraits::kMicroVecs;
  std::size_t c = 0;
  for (; c + kVecs <= vecs; c += kVecs) {
    PvMicroTile<kRows, kVecs>(p, p_stride, keys, v + c * N, v_stride, alpha,
                              o + c * N, o_stride);
  }
  const std::size_t rest = vecs - c;
  if (rest == 0) return;
  v += c * N;
  o += c * N;
  if constexpr (kVecs == 4) {
    if (rest == 3) {
      PvMicroTile<kRows, 3>(p, p_stride, keys, v, v_stride, alpha, o, o_stride);
      return;
    }
    if (rest == 2) {
      PvMicroTile<kRows, 2>(p, p_stride, keys, v, v_stride, alpha, o, o_stride);
      return;
    }
  }
  PvMicroTile<kRows, 1>(p, p_stride, keys, v, v_stride, alpha, o, o_stride);
}

// Scores inside the kernel are in base 2: Q is scaled by scale * log2(e)
// when it is loaded, so the softmax needs 2^x and no multiply per element.
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2 = 0.693147180559945309f;

// 2^t for t <= 0 (also -inf and NaN), as 2^n * p(f) with n = round(t) and
// a degree-6 near-minimax polynomial for 2^f on [-1/2, 1/2] (relative error
// about 1e-7). Adding 1.5 * 2^23 rounds t to an integer held in the low
// mantissa bits, which give both n and the exponent field of 2^n without a
// float-to-int conversion. Results that would be subnormal (t < -126) are
// exactly 0, so a hidden or negligible key contributes nothing rather than
// denormal noise; -inf gives 0 and NaN stays NaN (the polynomial carries it).
HWY_INLINE VF Exp2NonPositive(VF t) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const VF magic = hn::Set(d, 12582912.0f);  // 1.5 * 2^23
  const VF shifted = hn::Add(t, magic);      // bits: 0x4B400000 + n
  const VF f = hn::Sub(t, hn::Sub(shifted, magic));
  VF poly = hn::Set(d, 1.5370715e-4f);
  poly = hn::MulAdd(poly, f, hn::Set(d, 1.3399858e-3f));
  poly = hn::MulAdd(poly, f, hn::Set(d, 9.6183736e-3f));
  poly = hn::MulAdd(poly, f, hn::Set(d, 5.5503290e-2f));
  poly = hn::MulAdd(poly, f, hn::Set(d, 2.4022648e-1f));
  poly = hn::MulAdd(poly, f, hn::Set(d, 6.9314718e-1f));
  poly = hn::MulAdd(poly, f, hn::Set(d, 1.0f));
  // (n + 127) << 23 is 2^n's bit pattern; the 0x4B400000 above n shifts out.
  const auto exponent =
      hn::ShiftLeft<23>(hn::Add(hn::BitCast(du, shifted), hn::Set(du, 127u)));
  const VF result = hn::Mul(poly, hn::BitCast(d, exponent));
  return hn::IfThenZeroElse(hn::Lt(t, hn::Set(d, -126.0f)), result);
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_TILES_INL_H_
