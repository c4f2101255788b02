// Score modifiers of the fused forward, per target: softcap, ALiBi and the
// mask tensor applied to a block of scores, vectorized where the mask row is
// contiguous, and the test that lets a block the mask hides entirely be
// skipped before any arithmetic. The scalar fallback is core::ModifyScore,
// the definition the reference uses too.

#if defined(SALIENCE_KERNELS_SIMD_SCORE_MODS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_SCORE_MODS_INL_H_
#undef SALIENCE_KERNELS_SIMD_SCORE_MODS_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_SCORE_MODS_INL_H_
#endif

#include <cstdint>
#include <limits>

#include "core/problem.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/simd/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// Whether mask entries row[0 .. keys) (step apart) are all "hidden": 0 for
// a bool mask, -inf for an additive one. Unit-step rows are scanned a vector
// at a time, since a block the mask hides is scanned whole.
inline bool RowHidden(const std::uint8_t* row, std::int64_t step, std::int64_t keys) {
  std::int64_t j = 0;
  if (step == 1) {
    const hn::ScalableTag<std::uint8_t> d8;
    const std::int64_t n = static_cast<std::int64_t>(hn::Lanes(d8));
    for (; j + n <= keys; j += n) {
      if (!hn::AllTrue(d8, hn::Eq(hn::LoadU(d8, row + j), hn::Zero(d8)))) return false;
    }
  }
  for (; j < keys; ++j) {
    if (row[j * step] != 0) return false;
  }
  return true;
}

inline bool RowHidden(const float* row, std::int64_t step, std::int64_t keys) {
  constexpr float kHidden = -std::numeric_limits<float>::infinity();
  std::int64_t j = 0;
  if (step == 1) {
    const DF d;
    const std::int64_t n = static_cast<std::int64_t>(hn::Lanes(d));
    for (; j + n <= keys; j += n) {
      if (!hn::AllTrue(d, hn::Eq(hn::LoadU(d, row + j), hn::Set(d, kHidden)))) return false;
    }
  }
  for (; j < keys; ++j) {
    if (row[j * step] != kHidden) return false;
  }
  return true;
}

// Whether the mask tensor hides every key of the block [block_start,
// block_end) from every row of the tile. Scans stop at the first visible
// entry, so a block that is mostly visible costs a few loads.
inline bool MaskHidesBlock(const core::Problem& p, std::int64_t seq_index,
                           std::int64_t head, std::int64_t row_begin,
                           std::size_t rows, std::int64_t block_start,
                           std::int64_t block_end) {
  const TensorView& m = p.mask;
  const std::int64_t keys = block_end - block_start;
  for (std::size_t r = 0; r < rows; ++r) {
    const std::int64_t at = m.Offset(seq_index, head, row_begin + r, block_start);
    const bool hidden =
        m.dtype == DType::kBool
            ? RowHidden(static_cast<const std::uint8_t*>(m.data) + at, m.strides[3], keys)
            : RowHidden(static_cast<const float*>(m.data) + at, m.strides[3], keys);
    if (!hidden) return false;
  }
  return true;
}

// One row of a block, all kKvBlock keys readable from the mask (or no mask).
// Hidden scores (-inf) stay hidden whatever the modifiers do to them.
inline void ModifyRowVectorized(const core::Problem& p, const core::SeqSpan& seq,
                                std::int64_t seq_index, std::int64_t head,
                                std::int64_t i, std::int64_t block_start,
                                float* row) {
  const DF d;
  const hn::Rebind<std::uint8_t, DF> d8;
  const hn::Rebind<std::uint32_t, DF> d32;
  constexpr std::size_t N = TileTraits::kLanes;
  const VF neg_inf = hn::Set(d, -std::numeric_limits<float>::infinity());
  const AttentionOptions& o = p.options;
  const bool alibi = !o.alibi_slopes.empty();
  const VF slope = hn::Set(d, alibi ? p.AlibiSlope(seq_index, head) : 0.0f);
  const std::int64_t diagonal = i + seq.k_len - seq.q_len;  // ALiBi's zero
  const void* mask_row = nullptr;
  if (p.mask.data != nullptr) {
    const std::int64_t at = p.mask.Offset(seq_index, head, i, block_start);
    mask_row = p.mask.dtype == DType::kBool
                   ? static_cast<const void*>(static_cast<const std::uint8_t*>(p.mask.data) + at)
                   : static_cast<const void*>(static_cast<const float*>(p.mask.data) + at);
  }
  for (std::size_t c = 0; c < TileTraits::kKvBlock; c += N) {
    VF s = hn::Mul(hn::Load(d, row + c), hn::Set(d, kLn2));  // to natural units
    auto hidden = hn::Eq(s, neg_inf);
    if (o.softcap > 0.0f) {
      s = hn::Mul(hn::Set(d, o.softcap),
                  hn::Tanh(d, hn::Mul(s, hn::Set(d, 1.0f / o.softcap))));
    }
    if (alibi) {
      const VF first = hn::Set(d, static_cast<float>(diagonal - block_start - static_cast<std::int64_t>(c)));
      s = hn::NegMulAdd(slope, hn::Abs(hn::Sub(first, hn::Iota(d, 0.0f))), s);
    }
    if (mask_row != nullptr && p.mask.dtype == DType::kBool) {
      const auto bytes = hn::LoadU(d8, static_cast<const std::uint8_t*>(mask_row) + c);
      const auto off = hn::Eq(hn::PromoteTo(d32, bytes), hn::Zero(d32));
      hidden = hn::Or(hidden, hn::RebindMask(d, off));
    } else if (mask_row != nullptr) {
      const VF add = hn::LoadU(d, static_cast<const float*>(mask_row) + c);
      hidden = hn::Or(hidden, hn::Eq(add, neg_inf));
      s = hn::Add(s, add);
    }
    s = hn::Mul(s, hn::Set(d, kLog2e));  // back to base 2
    hn::Store(hn::IfThenElse(hidden, neg_inf, s), d, row + c);
  }
}

// Softcap, ALiBi and the mask tensor on the tile's scores that the key
// ranges left visible. The tile holds base-2 scores; the modifiers are
// defined on natural ones, so each visible score is converted there and
// back. Rows whose mask is not contiguous along keys, or
// that would read past the mask's key extent (a tail block), take the
// scalar definition.
inline void ApplyScoreMods(const core::Problem& p, const core::SeqSpan& seq,
                           std::int64_t seq_index, std::int64_t head,
                           std::int64_t row_begin, std::size_t rows,
                           std::int64_t block_start, float* s) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  const bool vectorizable =
      p.mask.data == nullptr ||
      (p.mask.strides[3] == 1 && block_start + kBlock <= p.mask.shape[3]);
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = s + r * kBlock;
    const std::int64_t i = row_begin + static_cast<std::int64_t>(r);
    if (vectorizable) {
      ModifyRowVectorized(p, seq, seq_index, head, i, block_start, row);
      continue;
    }
    for (std::int64_t j = 0; j < kBlock; ++j) {
      if (row[j] == -std::numeric_limits<float>::infinity()) continue;
      row[j] = kLog2e * core::ModifyScore<float>(p, seq, seq_index, head, i,
                                                 block_start + j, row[j] * kLn2);
    }
  }
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_SCORE_MODS_INL_H_
