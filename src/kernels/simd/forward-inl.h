// The fused forward pass, FlashAttention-2 style, per SIMD target.
//
// For each work item (a tile of query rows of one head against a chunk of
// packed keys) and each kv block the item's rows can see (blocks outside
// the causal/window/length bounds are never visited, blocks the mask tensor
// hides entirely are skipped):
//   S = (scale log2(e) Q) K^T              QkMicroTile
//   hide keys outside each row's range     ApplyKeyRanges
//   softcap, ALiBi, mask tensor            ApplyScoreMods
//   m' = max(m, rowmax S), P = 2^(S - m'), l' = l 2^(m-m') + rowsum P
//   O  = O e^(m-m') + P V                  PvMicroTile
// and at the end O / l and lse = m ln 2 + log l. Scores are kept in base 2
// (Q carries a factor log2 e), which saves a multiply per exp. Nothing grows with
// seq_q x seq_k: the score tile is q_tile_rows x kv_block.

#if defined(SALIENCE_KERNELS_SIMD_FORWARD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_FORWARD_INL_H_
#undef SALIENCE_KERNELS_SIMD_FORWARD_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_FORWARD_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "core/problem.h"
#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"
#include "kernels/simd/convert-inl.h"
#include "kernels/simd/dropout-inl.h"
#include "kernels/simd/pack-inl.h"
#include "kernels/simd/schedule.h"
#include "kernels/simd/score_mods-inl.h"
#include "kernels/simd/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Bytes of packed K and V one phase may hold: keeps the workspace
// independent of sequence length (16 MiB is 32k keys at head_dim 64) while
// a whole (head, sequence) of typical length fits in one phase.
constexpr std::int64_t kPackBudgetBytes = std::int64_t{16} << 20;

// Per-thread tiles, allocated once per call.
struct Scratch {
  float* q_tile;   // [kQTileRows][head_dim], scaled queries
  float* s_tile;   // [kQTileRows][kKvBlock], scores then probabilities
  float* o_tile;   // [kQTileRows][dv_pad], unnormalized output
  float* row_max;  // [kQTileRows] running max m
  float* row_sum;  // [kQTileRows][lanes] running sum l, per lane
  float* alpha;    // [kQTileRows] rescale factor of the current block
  std::uint8_t* hidden;  // [kQTileRows][kKvBlock], see MarkHidden
  // The bf16 dot-product path's tiles (dot_bf16-inl.h); null otherwise.
  std::uint16_t* q_bf16;  // [kQTileRows][depth_pairs][2], unscaled queries
  std::uint16_t* p_bf16;  // [kQTileRows][kKvBlock], probabilities
  float* v_widened;       // [kKvBlock][dv_pad], see PvSkippingHidden
};

// Softmax state carried across phases when a row's keys span chunks. The
// unnormalized output waits in `out` when that is fp32, in partial_out
// ([batch][seq_q][heads_q][head_dim_v]) when rounding it to out's 16-bit
// dtype between chunks would lose precision.
struct CarriedState {
  std::vector<float> row_max, row_sum;  // [batch][seq_q][heads_q]
  std::vector<float> partial_out;
  std::int64_t Index(const core::Problem& p, std::int64_t tensor_batch,
                     std::int64_t row, std::int64_t head) const {
    return (tensor_batch * p.q.shape[1] + row) * p.heads_q + head;
  }
};

// Everything a work item reads besides the problem.
struct ItemContext {
  const core::Problem* p;
  const PackedKv* packed;
  CarriedState* state;
  std::size_t dv_pad;
};

// Sets S to -inf outside each row's visible key range.
inline void ApplyKeyRanges(const core::Problem& p, const core::SeqSpan& seq,
                           std::int64_t row_begin, std::size_t rows,
                           std::int64_t block_start, float* s) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  for (std::size_t r = 0; r < rows; ++r) {
    const core::KeyRange keys = p.Keys(seq, row_begin + r);
    const std::int64_t lo = std::clamp<std::int64_t>(keys.begin - block_start, 0, kBlock);
    const std::int64_t hi = std::clamp<std::int64_t>(keys.end - block_start, lo, kBlock);
    float* row = s + r * kBlock;
    std::fill(row, row + lo, kNegInf);
    std::fill(row + hi, row + kBlock, kNegInf);
  }
}

// The online-softmax step for the tile's rows: grows each running max, turns
// the scores into probabilities in place and sets alpha, the factor that
// rescales what a row accumulated before. A row that has seen no visible
// key keeps max -inf and uses 0 as its reference point, so hidden scores
// give exp(-inf) = 0 rather than NaN. The running sum stays a vector per row
// (lanes summed once, at the end), which saves a horizontal reduction per
// row and block; alpha needs an exp only when the max grew.
inline void SoftmaxBlock(float* s, std::size_t rows, float* row_max,
                         float* row_sum, float* alpha) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes;
  constexpr std::size_t kBlock = TileTraits::kKvBlock;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = s + r * kBlock;
    VF block_max = hn::Load(d, row);
    for (std::size_t c = N; c < kBlock; c += N) {
      block_max = hn::Max(block_max, hn::Load(d, row + c));
    }
    const float seen = hn::GetLane(hn::MaxOfLanes(d, block_max));
    alpha[r] = 1.0f;
    if (seen > row_max[r]) {
      // Old max -inf: nothing accumulated, alpha = exp(-inf) = 0 is exact.
      alpha[r] = hn::GetLane(Exp2NonPositive(hn::Set(d, row_max[r] - seen)));
      row_max[r] = seen;
    }
  }
  for (std::size_t r = 0; r < rows; ++r) {
    float* row = s + r * kBlock;
    const VF ref = hn::Set(d, row_max[r] == kNegInf ? 0.0f : row_max[r]);
    VF sum = hn::Mul(hn::Load(d, row_sum + r * N), hn::Set(d, alpha[r]));
    for (std::size_t c = 0; c < kBlock; c += N) {
      const VF prob = Exp2NonPositive(hn::Sub(hn::Load(d, row + c), ref));
      hn::Store(prob, d, row + c);
      sum = hn::Add(sum, prob);
    }
    hn::Store(sum, d, row_sum + r * N);
  }
}

// The running sum l of row r: its lanes added in a fixed order.
inline float RowSum(const float* row_sum, std::size_t r) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes;
  return hn::GetLane(hn::SumOfLanes(d, hn::Load(d, row_sum + r * N)));
}

// Records which scores of the tile are hidden (-inf), before the softmax
// turns them, and negligible visible ones alike, into zeros.
inline void MarkHidden(const float* s, std::size_t rows, std::uint8_t* hidden) {
  for (std::size_t at = 0; at < rows * TileTraits::kKvBlock; ++at) {
    hidden[at] = s[at] == kNegInf;
  }
}

// O = alpha O + P V skipping the value rows of hidden keys: used for blocks
// whose V holds inf/NaN, so that a value the row cannot see never turns
// 0 * NaN into NaN, while a visible one propagates even at weight 0.
inline void PvSkippingHidden(const float* p, const std::uint8_t* hidden,
                             std::size_t rows, std::size_t keys,
                             const float* v, std::size_t dv_pad,
                             const float* alpha, float* o) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes;
  for (std::size_t r = 0; r < rows; ++r) {
    float* o_row = o + r * dv_pad;
    const VF scale = hn::Set(d, alpha[r]);
    for (std::size_t c = 0; c < dv_pad; c += N) {
      hn::Store(hn::Mul(hn::Load(d, o_row + c), scale), d, o_row + c);
    }
    for (std::size_t k = 0; k < keys; ++k) {
      const std::size_t at = r * TileTraits::kKvBlock + k;
      if (hidden[at]) continue;
      const VF w = hn::Set(d, p[at]);
      for (std::size_t c = 0; c < dv_pad; c += N) {
        hn::Store(hn::MulAdd(w, hn::Load(d, v + k * dv_pad + c), hn::Load(d, o_row + c)),
                  d, o_row + c);
      }
    }
  }
}

// Copies the tile's query rows (of any dtype), times scale * log2(e), into
// q_tile in fp32; rows past the tile's end are zero so the micro-kernels can
// run whole row groups.
inline void LoadQueries(const core::Problem& p, const core::SeqSpan& seq,
                        std::int64_t head, std::int64_t row_begin,
                        std::size_t rows, std::size_t rows_padded,
                        float* q_tile) {
  const std::int64_t depth = p.head_dim;
  for (std::size_t r = 0; r < rows; ++r) {
    ReadRow(p.q, p.q.Offset(seq.tensor_batch, seq.q_begin + row_begin + r, head, 0),
            depth, p.scale * kLog2e, q_tile + r * depth);
  }
  std::fill(q_tile + rows * depth, q_tile + rows_padded * depth, 0.0f);
}

// Starts the tile's softmax state: fresh, or carried from an earlier chunk
// (the unnormalized output was parked in `out`).
inline void BeginState(const ItemContext& ctx, const Piece& piece,
                       const core::SeqSpan& seq, const WorkItem& item,
                       std::size_t rows_padded, const Scratch& sc) {
  const core::Problem& p = *ctx.p;
  std::fill(sc.o_tile, sc.o_tile + rows_padded * ctx.dv_pad, 0.0f);
  std::fill(sc.row_max, sc.row_max + rows_padded, kNegInf);
  std::fill(sc.row_sum, sc.row_sum + rows_padded * TileTraits::kLanes, 0.0f);
  std::fill(sc.alpha, sc.alpha + rows_padded, 1.0f);
  if (piece.first_chunk) return;
  const std::vector<float>& partial = ctx.state->partial_out;
  for (std::int64_t r = 0; r < item.row_end - item.row_begin; ++r) {
    const std::int64_t row = seq.q_begin + item.row_begin + r;
    const std::int64_t at = ctx.state->Index(p, seq.tensor_batch, row, item.head);
    sc.row_max[r] = ctx.state->row_max[at];
    sc.row_sum[r * TileTraits::kLanes] = ctx.state->row_sum[at];
    if (sc.row_max[r] == kNegInf) continue;  // nothing accumulated yet
    float* acc = sc.o_tile + r * ctx.dv_pad;
    if (partial.empty()) {
      ReadRow(p.out, p.out.Offset(seq.tensor_batch, row, item.head, 0), p.head_dim_v, 1.0f, acc);
    } else {
      std::copy_n(partial.data() + at * p.head_dim_v, p.head_dim_v, acc);
    }
  }
}

// Ends the tile: normalizes into out and lse on the last chunk, or parks
// the unnormalized state for the next one.
inline void EndState(const ItemContext& ctx, const Piece& piece,
                     const core::SeqSpan& seq, const WorkItem& item,
                     const Scratch& sc) {
  const core::Problem& p = *ctx.p;
  std::vector<float>& partial = ctx.state->partial_out;
  for (std::int64_t r = 0; r < item.row_end - item.row_begin; ++r) {
    const std::int64_t row = seq.q_begin + item.row_begin + r;
    const std::int64_t dst = p.out.Offset(seq.tensor_batch, row, item.head, 0);
    const float* acc = sc.o_tile + r * ctx.dv_pad;
    const float sum = RowSum(sc.row_sum, r);
    if (!piece.last_chunk) {
      const std::int64_t at = ctx.state->Index(p, seq.tensor_batch, row, item.head);
      ctx.state->row_max[at] = sc.row_max[r];
      ctx.state->row_sum[at] = sum;
      if (partial.empty()) {
        WriteRow(acc, p.head_dim_v, 1.0f, p.out, dst);
      } else {
        std::copy_n(acc, p.head_dim_v, partial.data() + at * p.head_dim_v);
      }
      continue;
    }
    // sum == 0: the row saw no key (sum >= 1 otherwise, from its max).
    const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    WriteRow(acc, p.head_dim_v, inv, p.out, dst);
    if (p.lse != nullptr) {
      auto* lse = static_cast<float*>(p.lse->data);
      lse[p.lse->Offset(seq.tensor_batch, item.head, row)] =
          sum == 0.0f ? kNegInf : sc.row_max[r] * kLn2 + std::log(sum);
    }
  }
}

// The tile's rows that see a block: [first, first + rows), with the micro
// row groups covering them, [first, first + padded). Row ranges grow with the
// row index, so the rows whose range meets a block are contiguous; rows
// outside the band skip the block entirely (on a causal diagonal block,
// about half of the tile).
struct Band {
  std::size_t first = 0, rows = 0, padded = 0;
};

inline Band RowsSeeingBlock(const core::Problem& p, const core::SeqSpan& seq,
                            std::int64_t row_begin, std::size_t rows,
                            std::int64_t start, std::int64_t stop) {
  constexpr std::size_t kMicroRows = TileTraits::kMicroRows;
  std::size_t lo = 0, hi = rows;
  while (lo < hi && p.Keys(seq, row_begin + lo).end <= start) ++lo;
  while (hi > lo && p.Keys(seq, row_begin + hi - 1).begin >= stop) --hi;
  Band band;
  band.first = lo / kMicroRows * kMicroRows;
  band.rows = hi - band.first;
  band.padded = hi > lo ? (hi - band.first + kMicroRows - 1) / kMicroRows * kMicroRows : 0;
  return band;
}

// The fp32 tiles: K and V of any dtype widened to fp32 when packed, scaled
// queries in fp32, QkMicroTile and PvRows. The bf16 dot-product tiles
// (dot_bf16-inl.h) have the same members; RunItem is written once for both.
struct F32Tiles {
  static PackedKv::BlockFloats Block(std::size_t depth, std::size_t dv_pad) {
    return PackedKv::F32Block(depth, dv_pad);
  }
  // Per-thread floats beyond Scratch's fp32 tiles.
  static std::size_t ExtraScratchFloats(std::size_t, std::size_t) { return 0; }

  static void Pack(const core::Problem& p, const Piece& piece, std::int64_t block_in_piece,
                   std::size_t dv_pad, std::int64_t block, PackedKv* packed) {
    PackBlock(p, piece, block_in_piece, dv_pad, block, packed);
  }

  static void LoadQueries(const core::Problem& p, const core::SeqSpan& seq, std::int64_t head,
                          std::int64_t row_begin, std::size_t rows, std::size_t rows_padded,
                          const Scratch& sc) {
    HWY_NAMESPACE::LoadQueries(p, seq, head, row_begin, rows, rows_padded, sc.q_tile);
  }

  // S (band rows, base-2 scaled) for packed block `block`.
  static void Scores(const ItemContext& ctx, const Scratch& sc, std::int64_t block,
                     const Band& band, float* s) {
    constexpr std::size_t kRows = TileTraits::kMicroRows;
    const std::size_t depth = static_cast<std::size_t>(ctx.p->head_dim);
    const float* kt = ctx.packed->KeyBlock(block);
    for (std::size_t g = 0; g < band.padded; g += kRows) {
      QkMicroTile<kRows, TileTraits::kMicroVecs>(sc.q_tile + (band.first + g) * depth, depth,
                                                 kt, depth, s + g * TileTraits::kKvBlock,
                                                 TileTraits::kKvBlock);
    }
  }

  // The block's V as fp32 [kv_block][dv_pad], for PvSkippingHidden.
  static const float* WidenedValues(const ItemContext& ctx, const Scratch&, std::int64_t block) {
    return ctx.packed->ValueBlock(block);
  }

  // O = alpha O + P V over the band's row groups; P is the fp32 tile s.
  static void Values(const ItemContext& ctx, const Scratch&, std::int64_t block,
                     const Band& band, std::size_t keys, const float* s, const float* alpha,
                     float* o) {
    constexpr std::size_t kRows = TileTraits::kMicroRows;
    const std::size_t dv_pad = ctx.dv_pad;
    const float* v = ctx.packed->ValueBlock(block);
    for (std::size_t g = 0; g < band.padded; g += kRows) {
      PvRows<kRows>(s + g * TileTraits::kKvBlock, TileTraits::kKvBlock, keys, v, dv_pad,
                    alpha + g, o + g * dv_pad, dv_pad, dv_pad / TileTraits::kLanes);
    }
  }
};

// One query tile of one head against the packed blocks of one piece.
template <class Tiles>
void RunItem(const ItemContext& ctx, const Piece& piece, const WorkItem& item,
             const Scratch& sc) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  constexpr std::size_t kMicroRows = TileTraits::kMicroRows;
  const core::Problem& p = *ctx.p;
  const core::SeqSpan seq = p.Seq(piece.seq);
  const std::size_t rows = static_cast<std::size_t>(item.row_end - item.row_begin);
  const std::size_t rows_padded = (rows + kMicroRows - 1) / kMicroRows * kMicroRows;
  const std::size_t dv_pad = ctx.dv_pad;

  const core::Dropout dropout(p.options);
  BeginState(ctx, piece, seq, item, rows_padded, sc);
  const core::KeyRange hull = TileKeys(p, seq, item.row_begin, item.row_end);
  const std::int64_t begin = std::max(hull.begin, piece.key_begin);
  const std::int64_t end = std::min(hull.end, piece.key_end);
  if (end > begin) Tiles::LoadQueries(p, seq, item.head, item.row_begin, rows, rows_padded, sc);
  // Keys every row of the tile sees: blocks inside need no masking.
  const std::int64_t all_begin = p.Keys(seq, item.row_end - 1).begin;
  const std::int64_t all_end = p.Keys(seq, item.row_begin).end;

  for (std::int64_t start = begin / kBlock * kBlock; start < end; start += kBlock) {
    const std::int64_t stop = std::min(start + kBlock, end);
    const bool whole = start >= all_begin && start + kBlock <= all_end;
    const Band band = whole ? Band{0, rows, rows_padded}
                            : RowsSeeingBlock(p, seq, item.row_begin, rows, start, stop);
    if (band.padded == 0) continue;
    const std::int64_t band_row = item.row_begin + static_cast<std::int64_t>(band.first);
    // A block the mask tensor hides from every row costs no arithmetic.
    if (p.mask.data != nullptr &&
        MaskHidesBlock(p, piece.seq, item.head, band_row, band.rows, start, stop)) {
      continue;
    }
    const std::int64_t block = piece.pack_offset + (start - piece.key_begin) / kBlock;
    float* s = sc.s_tile + band.first * kBlock;
    Tiles::Scores(ctx, sc, block, band, s);
    if (!whole) ApplyKeyRanges(p, seq, band_row, band.rows, start, s);
    if (p.has_score_mods()) {
      ApplyScoreMods(p, seq, piece.seq, item.head, band_row, band.rows, start, s);
    }
    // inf/NaN in V where some key is hidden: the product must skip hidden
    // keys rather than multiply their values by 0 (rare; a slower path).
    const bool skip_hidden =
        (!whole || p.mask.data != nullptr) && ctx.packed->ValueNonFinite(block);
    if (skip_hidden) MarkHidden(s, band.rows, sc.hidden);
    float* alpha = sc.alpha + band.first;
    SoftmaxBlock(s, band.rows, sc.row_max + band.first,
                 sc.row_sum + band.first * TileTraits::kLanes, alpha);
    // Dropout acts on the weights P V sees; the running sum, and so lse,
    // stays that of the undropped softmax.
    if (dropout.enabled()) {
      ApplyDropoutMask(dropout, piece.seq, p.heads_q, item.head, band_row, band.rows, start, s);
    }
    const std::size_t keys = static_cast<std::size_t>(stop - start);
    float* o = sc.o_tile + band.first * dv_pad;
    if (skip_hidden) {
      PvSkippingHidden(s, sc.hidden, band.rows, keys, Tiles::WidenedValues(ctx, sc, block),
                       dv_pad, alpha, o);
      continue;
    }
    Tiles::Values(ctx, sc, block, band, keys, s, alpha, o);
  }
  EndState(ctx, piece, seq, item, sc);
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_FORWARD_INL_H_
