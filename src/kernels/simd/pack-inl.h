// Packing of K and V into the layouts the micro-kernels stream, per target.
//
// K block: [head_dim][kv_block], keys transposed so QkMicroTile loads a
// whole vector of keys per depth step. V block: [kv_block][dv_pad], rows
// padded to whole vectors. Keys past the chunk's end are zero in both, so a
// tail block runs through the same micro-kernels; whatever the caller
// stored there (NaN included) is never read.

#if defined(SALIENCE_KERNELS_SIMD_PACK_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_PACK_INL_H_
#undef SALIENCE_KERNELS_SIMD_PACK_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_PACK_INL_H_
#endif

#include <cstdint>
#include <cstring>

#include "core/problem.h"
#include "hwy/highway.h"
#include "kernels/simd/schedule.h"
#include "kernels/simd/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// A view of the packed blocks of one phase, laid out in a caller-owned
// buffer of Floats(blocks, ...) floats.
class PackedKv {
 public:
  // Floats needed for `blocks` blocks (the non-finite flags included).
  static std::size_t Floats(std::size_t blocks, std::size_t head_dim,
                            std::size_t dv_pad) {
    return blocks * (head_dim + dv_pad + 1) * TileTraits::kKvBlock;
  }

  PackedKv(float* buffer, std::size_t blocks, std::size_t head_dim,
           std::size_t dv_pad)
      : key_floats_(head_dim * TileTraits::kKvBlock),
        value_floats_(TileTraits::kKvBlock * dv_pad),
        keys_(buffer),
        values_(buffer + blocks * key_floats_),
        non_finite_(values_ + blocks * value_floats_) {}

  float* KeyBlock(std::int64_t block) { return keys_ + block * key_floats_; }
  const float* KeyBlock(std::int64_t block) const { return keys_ + block * key_floats_; }
  float* ValueBlock(std::int64_t block) { return values_ + block * value_floats_; }
  const float* ValueBlock(std::int64_t block) const { return values_ + block * value_floats_; }
  // Whether the block's V holds an inf or NaN (see PvSkippingHidden).
  bool ValueNonFinite(std::int64_t block) const { return non_finite_[block] != 0.0f; }
  void SetValueNonFinite(std::int64_t block, bool value) { non_finite_[block] = value ? 1.0f : 0.0f; }

 private:
  std::size_t key_floats_, value_floats_;
  float* keys_;
  float* values_;
  float* non_finite_;  // one flag per block
};

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

// Packs block `block_in_piece` of `piece` into workspace block `block`.
inline void PackBlock(const core::Problem& p, const Piece& piece,
                      std::int64_t block_in_piece, std::size_t dv_pad,
                      std::int64_t block, PackedKv* packed) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  const core::SeqSpan seq = p.Seq(piece.seq);
  const std::int64_t first = piece.key_begin + block_in_piece * kBlock;
  const std::int64_t count = std::min(kBlock, piece.key_end - first);
  const auto* k = static_cast<const float*>(p.k.data);
  const auto* v = static_cast<const float*>(p.v.data);
  const std::int64_t depth = p.head_dim, dv = p.head_dim_v;

  float* kt = packed->KeyBlock(block);
  std::memset(kt, 0, sizeof(float) * depth * kBlock);
  for (std::int64_t j = 0; j < count; ++j) {
    const float* src = k + p.k.Offset(seq.tensor_batch, seq.k_begin + first + j, piece.kv_head, 0);
    for (std::int64_t c = 0; c < depth; ++c) kt[c * kBlock + j] = src[c * p.k.strides[3]];
  }

  float* vb = packed->ValueBlock(block);
  std::memset(vb, 0, sizeof(float) * kBlock * dv_pad);
  std::uint32_t exponent_all_ones = 0;  // any inf/NaN among the values
  for (std::int64_t j = 0; j < count; ++j) {
    const float* src = v + p.v.Offset(seq.tensor_batch, seq.k_begin + first + j, piece.kv_head, 0);
    float* dst = vb + j * dv_pad;
    GatherScaled(src, p.v.strides[3], dv, 1.0f, dst);
    for (std::int64_t c = 0; c < dv; ++c) {
      std::uint32_t bits;
      std::memcpy(&bits, dst + c, sizeof(bits));
      exponent_all_ones |= (bits & 0x7f800000u) == 0x7f800000u;
    }
  }
  packed->SetValueNonFinite(block, exponent_all_ones != 0);
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_PACK_INL_H_
