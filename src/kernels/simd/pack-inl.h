// Packing of K and V into the layouts the micro-kernels stream, per target.
//
// K block: [head_dim][kv_block], keys transposed so QkMicroTile loads a
// whole vector of keys per depth step. V block: [kv_block][dv_pad], rows
// padded to whole vectors. Keys past the chunk's end are zero in both, so a
// tail block runs through the same micro-kernels; whatever the caller
// stored there (NaN included) is never read. K and V of any dtype are
// widened to fp32 here; the bf16 dot-product path packs bf16 pairs instead
// (dot_bf16-inl.h).

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
#include "kernels/simd/convert-inl.h"
#include "kernels/simd/schedule.h"
#include "kernels/simd/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// A view of the packed blocks of one phase, laid out in a caller-owned
// buffer of Floats(blocks, ...) floats: fp32 blocks (PackBlock) or bf16
// pairs (PackBlockBf16Pairs, dot_bf16-inl.h), whose BlockFloats count the
// 16-bit elements two to a float.
class PackedKv {
 public:
  // Floats of one block's K and of its V.
  struct BlockFloats {
    std::size_t key, value;
  };
  // fp32 blocks: K [head_dim][kv_block], V [kv_block][dv_pad].
  static BlockFloats F32Block(std::size_t head_dim, std::size_t dv_pad) {
    return {head_dim * TileTraits::kKvBlock, TileTraits::kKvBlock * dv_pad};
  }

  // Floats needed for `blocks` blocks (the non-finite flags included, a
  // block's worth each so that what follows stays vector aligned).
  static std::size_t Floats(std::size_t blocks, BlockFloats block) {
    return blocks * (block.key + block.value + TileTraits::kKvBlock);
  }
  static std::size_t Floats(std::size_t blocks, std::size_t head_dim,
                            std::size_t dv_pad) {
    return Floats(blocks, F32Block(head_dim, dv_pad));
  }

  PackedKv(float* buffer, std::size_t blocks, BlockFloats block)
      : key_floats_(block.key),
        value_floats_(block.value),
        keys_(buffer),
        values_(buffer + blocks * key_floats_),
        non_finite_(values_ + blocks * value_floats_) {}
  PackedKv(float* buffer, std::size_t blocks, std::size_t head_dim,
           std::size_t dv_pad)
      : PackedKv(buffer, blocks, F32Block(head_dim, dv_pad)) {}

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

// The keys of block `block_in_piece` of `piece`: `count` keys from the
// piece's key `first`, and where key j of them starts in K or V.
struct PieceBlockKeys {
  core::SeqSpan seq;
  std::int64_t kv_head, first, count;

  std::int64_t Offset(const TensorView& t, std::int64_t j) const {
    return t.Offset(seq.tensor_batch, seq.k_begin + first + j, kv_head, 0);
  }
};

inline PieceBlockKeys LocatePieceBlock(const core::Problem& p,
                                       const Piece& piece,
                                       std::int64_t block_in_piece) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  const std::int64_t first = piece.key_begin + block_in_piece * kBlock;
  return {p.Seq(piece.seq), piece.kv_head, first,
          std::min(kBlock, piece.key_end - first)};
}

// Packs block `block_in_piece` of `piece` into workspace block `block` as
// fp32, widening bf16/f16 keys and values on the way.
inline void PackBlock(const core::Problem& p, const Piece& piece,
                      std::int64_t block_in_piece, std::size_t dv_pad,
                      std::int64_t block, PackedKv* packed) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  const PieceBlockKeys keys = LocatePieceBlock(p, piece, block_in_piece);
  const std::int64_t count = keys.count;
  const std::int64_t depth = p.head_dim, dv = p.head_dim_v;

  float* kt = packed->KeyBlock(block);
  std::memset(kt, 0, sizeof(float) * depth * kBlock);
  HWY_ALIGN float key[kRowBuffer];
  for (std::int64_t j = 0; j < count; ++j) {
    ReadRow(p.k, keys.Offset(p.k, j), depth, 1.0f, key);
    for (std::int64_t c = 0; c < depth; ++c) kt[c * kBlock + j] = key[c];
  }

  float* vb = packed->ValueBlock(block);
  std::memset(vb, 0, sizeof(float) * kBlock * dv_pad);
  std::uint32_t exponent_all_ones = 0;  // any inf/NaN among the values
  for (std::int64_t j = 0; j < count; ++j) {
    float* dst = vb + j * dv_pad;
    ReadRow(p.v, keys.Offset(p.v, j), dv, 1.0f, dst);
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
