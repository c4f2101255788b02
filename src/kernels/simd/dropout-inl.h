// Dropout on a block of attention weights, per target: the forward drops
// weights before P V, the backward regenerates the same mask for dV and dP.
// The mask is core::Dropout's (Philox4x32-10 keyed by seed, offset and the
// weight's indices), drawn four keys per call.

#if defined(SALIENCE_KERNELS_SIMD_DROPOUT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_DROPOUT_INL_H_
#undef SALIENCE_KERNELS_SIMD_DROPOUT_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_DROPOUT_INL_H_
#endif

#include <cstdint>

#include "core/dropout.h"
#include "hwy/highway.h"
#include "kernels/simd/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// Multiplies entry (r, c) of each [rows][kKvBlock] tile by 1 / (1 - p)
// where weight (seq_index, head, row_begin + r, block_start + c) is kept
// and by 0 where it is dropped. Blocks start at multiples of kKvBlock, a
// multiple of 4, so each call's four words cover four keys of the block.
template <typename... Tiles>
inline void ApplyDropoutMask(const core::Dropout& dropout, std::int64_t seq_index,
                             std::int64_t heads_q, std::int64_t head, std::int64_t row_begin,
                             std::size_t rows, std::int64_t block_start, Tiles*... tiles) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  static_assert(kBlock % 4 == 0);
  const float keep = dropout.keep_scale();
  for (std::size_t r = 0; r < rows; ++r) {
    const std::int64_t i = row_begin + static_cast<std::int64_t>(r);
    for (std::int64_t c = 0; c < kBlock; c += 4) {
      const core::PhiloxWords words =
          dropout.Words(seq_index, heads_q, head, i, (block_start + c) / 4);
      for (std::int64_t lane = 0; lane < 4; ++lane) {
        const float factor = dropout.Keeps(words[static_cast<std::size_t>(lane)]) ? keep : 0.0f;
        const std::int64_t at = static_cast<std::int64_t>(r) * kBlock + c + lane;
        ((tiles[at] *= factor), ...);
      }
    }
  }
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_DROPOUT_INL_H_
