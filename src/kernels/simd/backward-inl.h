// The fused backward pass, FlashAttention-2 style, per SIMD target.
//
// A work item (backward_schedule.h) packs one chunk of keys, then for each
// query tile of each query head of the GQA group and each kv block of the
// chunk the tile's rows can see:
//   S  = (scale log2(e) Q) K^T, hidden keys and score mods as in the forward
//   P  = 2^(S - lse log2(e))                the forward's weights, recomputed
//   dP = dO V^T                              (times the dropout mask)
//   dS = P (dP - D),  D = rowsum(dO o O)     (times softcap's 1 - tanh^2)
//   dV += P^T dO     dK += dS^T Q     dQ_chunk += dS K
// dV and dK of the chunk's keys accumulate in the item; the tile's dQ share
// goes to the item's slot, summed over chunks by the caller. Nothing of size
// seq_q x seq_k exists: the score tiles are q_tile_rows x kv_block.

#if defined(SALIENCE_KERNELS_SIMD_BACKWARD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_BACKWARD_INL_H_
#undef SALIENCE_KERNELS_SIMD_BACKWARD_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_BACKWARD_INL_H_
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/dropout.h"
#include "core/problem.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "kernels/simd/backward_schedule.h"
#include "kernels/simd/convert-inl.h"
#include "kernels/simd/dropout-inl.h"
#include "kernels/simd/forward-inl.h"
#include "kernels/simd/schedule.h"
#include "kernels/simd/score_mods-inl.h"
#include "kernels/simd/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// C[r][0 .. kVecs N) (+)= sum_k A(r, k) B[k][0 .. kVecs N) for kRows rows,
// with A(r, k) = a[r * a_row + k * a_col]. One register-blocked micro-kernel
// (the forward's shape: kRows x kVecs accumulators, one broadcast of A per
// row and step) serves all five products of the backward, whose A operands
// are row-major tiles (Q, dO, dS) or transposed views of them (P^T, dS^T);
// a broadcast costs the same at any stride.
template <std::size_t kRows, std::size_t kVecs, bool kAccumulate>
HWY_INLINE void GemmMicroTile(const float* HWY_RESTRICT a, std::size_t a_row,
                              std::size_t a_col, std::size_t depth,
                              const float* HWY_RESTRICT b, std::size_t b_stride,
                              float* HWY_RESTRICT c, std::size_t c_stride) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes;
  VF acc[kRows][kVecs];
  for (std::size_t r = 0; r < kRows; ++r) {
    for (std::size_t v = 0; v < kVecs; ++v) {
      acc[r][v] = kAccumulate ? hn::Load(d, c + r * c_stride + v * N) : hn::Zero(d);
    }
  }
  for (std::size_t k = 0; k < depth; ++k) {
    VF bk[kVecs];
    for (std::size_t v = 0; v < kVecs; ++v) bk[v] = hn::Load(d, b + k * b_stride + v * N);
    for (std::size_t r = 0; r < kRows; ++r) {
      const VF ar = hn::Set(d, a[r * a_row + k * a_col]);
      for (std::size_t v = 0; v < kVecs; ++v) acc[r][v] = hn::MulAdd(ar, bk[v], acc[r][v]);
    }
  }
  for (std::size_t r = 0; r < kRows; ++r) {
    for (std::size_t v = 0; v < kVecs; ++v) hn::Store(acc[r][v], d, c + r * c_stride + v * N);
  }
}

// One group of kRows rows across `vecs` column vectors, kMicroVecs at a time.
template <bool kAccumulate, std::size_t kRows>
HWY_INLINE void GemmRowGroup(const float* a, std::size_t a_row, std::size_t a_col,
                             std::size_t depth, const float* b, std::size_t b_stride,
                             std::size_t vecs, float* c, std::size_t c_stride) {
  constexpr std::size_t N = TileTraits::kLanes;
  constexpr std::size_t kVecs = TileTraits::kMicroVecs;
  std::size_t v = 0;
  for (; v + kVecs <= vecs; v += kVecs) {
    GemmMicroTile<kRows, kVecs, kAccumulate>(a, a_row, a_col, depth, b + v * N, b_stride,
                                             c + v * N, c_stride);
  }
  b += v * N;
  c += v * N;
  switch (vecs - v) {
    case 0:
      return;
    case 1:
      GemmMicroTile<kRows, 1, kAccumulate>(a, a_row, a_col, depth, b, b_stride, c, c_stride);
      return;
    case 2:
      if constexpr (kVecs > 2) {
        GemmMicroTile<kRows, 2, kAccumulate>(a, a_row, a_col, depth, b, b_stride, c, c_stride);
      }
      return;
    default:
      if constexpr (kVecs > 3) {
        GemmMicroTile<kRows, 3, kAccumulate>(a, a_row, a_col, depth, b, b_stride, c, c_stride);
      }
      return;
  }
}

// C[rows][vecs N] (+)= A(rows x depth) B[depth][vecs N], rows in groups of
// kMicroRows and a narrower group for the rest.
template <bool kAccumulate>
inline void Gemm(const float* a, std::size_t a_row, std::size_t a_col, std::size_t rows,
                 std::size_t depth, const float* b, std::size_t b_stride, std::size_t vecs,
                 float* c, std::size_t c_stride) {
  constexpr std::size_t kMR = TileTraits::kMicroRows;
  static_assert(kMR == 6);
  std::size_t r = 0;
  for (; r + kMR <= rows; r += kMR) {
    GemmRowGroup<kAccumulate, kMR>(a + r * a_row, a_row, a_col, depth, b, b_stride, vecs,
                                   c + r * c_stride, c_stride);
  }
  a += r * a_row;
  c += r * c_stride;
  switch (rows - r) {
    case 5:
      GemmRowGroup<kAccumulate, 5>(a, a_row, a_col, depth, b, b_stride, vecs, c, c_stride);
      break;
    case 4:
      GemmRowGroup<kAccumulate, 4>(a, a_row, a_col, depth, b, b_stride, vecs, c, c_stride);
      break;
    case 3:
      GemmRowGroup<kAccumulate, 3>(a, a_row, a_col, depth, b, b_stride, vecs, c, c_stride);
      break;
    case 2:
      GemmRowGroup<kAccumulate, 2>(a, a_row, a_col, depth, b, b_stride, vecs, c, c_stride);
      break;
    case 1:
      GemmRowGroup<kAccumulate, 1>(a, a_row, a_col, depth, b, b_stride, vecs, c, c_stride);
      break;
    default:
      break;
  }
}

// Query rows per tile of the backward: the forward's. dV and dK sum over a
// tile's rows inside the micro-kernel, so taller tiles load and store their
// accumulators less often (48 rows measured no faster on Zen 5).
constexpr std::size_t kBackwardQTileRows = TileTraits::kQTileRows;

// Per-thread tiles of the backward (floats unless noted).
struct BackwardScratch {
  float* kt;        // [chunk blocks][head_dim][kv_block]  K transposed
  float* k_rows;    // [chunk keys][d_pad]                  K row-major
  float* vt;        // [chunk blocks][head_dim_v][kv_block] V transposed
  float* dk_acc;    // [chunk keys][d_pad]   dK accumulator (x ln 2)
  float* dv_acc;    // [chunk keys][dv_pad]  dV accumulator
  float* q_tile;    // [q tile rows][d_pad]  scale log2(e) Q
  float* do_tile;   // [q tile rows][dv_pad] dO
  float* s;         // [q tile rows][kv_block] S, then P
  float* dp;        // [q tile rows][kv_block] dP, then dS
  float* p_kept;    // [q tile rows][kv_block] P after dropout (dropout only)
  float* raw;       // [q tile rows][kv_block] S before softcap (softcap only)
  float* lse2;      // [q tile rows] lse log2(e); +inf where the row sees nothing
  float* dsum;      // [q tile rows] D = rowsum(dO o O)
  std::uint8_t* k_non_finite;  // [chunk blocks] K holds an inf or NaN

  // Each region starts on a cache line (and so a vector) boundary.
  static constexpr std::size_t kAlign = 64 / sizeof(float);
  static constexpr std::size_t kRegions = 14;

  // Floats of one thread's scratch.
  static std::size_t Floats(std::size_t depth, std::size_t d_pad, std::size_t dv,
                            std::size_t dv_pad) {
    constexpr std::size_t kKeys = kBackwardChunkKeys, kRows = kBackwardQTileRows;
    constexpr std::size_t kBlock = TileTraits::kKvBlock;
    return kKeys * (depth + 2 * d_pad + dv + dv_pad) +
           kRows * (d_pad + dv_pad + 4 * kBlock + 2) + kKeys / kBlock +
           kRegions * kAlign;
  }

  BackwardScratch(float* base, std::size_t depth, std::size_t d_pad, std::size_t dv,
                  std::size_t dv_pad) {
    constexpr std::size_t kKeys = kBackwardChunkKeys, kRows = kBackwardQTileRows;
    constexpr std::size_t kBlock = TileTraits::kKvBlock;
    float* at = base;
    auto take = [&at](std::size_t n) {
      float* t = at;
      at += (n + kAlign - 1) / kAlign * kAlign;
      return t;
    };
    kt = take(kKeys * depth);
    k_rows = take(kKeys * d_pad);
    vt = take(kKeys * dv);
    dk_acc = take(kKeys * d_pad);
    dv_acc = take(kKeys * dv_pad);
    q_tile = take(kRows * d_pad);
    do_tile = take(kRows * dv_pad);
    s = take(kRows * kBlock);
    dp = take(kRows * kBlock);
    p_kept = take(kRows * kBlock);
    raw = take(kRows * kBlock);
    lse2 = take(kRows);
    dsum = take(kRows);
    k_non_finite = reinterpret_cast<std::uint8_t*>(at);
  }
};

// What an item reads besides its task.
struct BackwardContext {
  const core::Problem* p;
  const float* dsum;  // [batch][heads_q][seq_q], lse's layout, contiguous
  float* slots;       // the phase's dQ slots
  std::size_t d_pad, dv_pad;
};

// Whether row[0 .. n) (n a multiple of the lanes) holds an inf or NaN: an
// exponent field of all ones.
inline bool RowNonFinite(const float* row, std::size_t n) {
  const DF d;
  const hn::RebindToUnsigned<DF> du;
  const auto exponent = hn::Set(du, 0x7f800000u);
  auto any = hn::Zero(du);
  for (std::size_t c = 0; c < n; c += TileTraits::kLanes) {
    const auto bits = hn::BitCast(du, hn::Load(d, row + c));
    any = hn::Or(any, hn::VecFromMask(du, hn::Eq(hn::And(bits, exponent), exponent)));
  }
  return !hn::AllTrue(du, hn::Eq(any, hn::Zero(du)));
}

// Packs keys [key_begin, key_end) of (seq, kv_head): K transposed per block
// for S, K row-major for dQ, V transposed per block for dP. Keys past the
// end are zero.
inline void PackChunk(const core::Problem& p, const core::SeqSpan& seq, std::int64_t kv_head,
                      std::int64_t key_begin, std::int64_t key_end, std::size_t d_pad,
                      const BackwardScratch& sc) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  const std::int64_t depth = p.head_dim, dv = p.head_dim_v;
  const std::int64_t keys = key_end - key_begin;
  const std::int64_t padded = (keys + kBlock - 1) / kBlock * kBlock;
  std::fill(sc.kt, sc.kt + padded * depth, 0.0f);
  std::fill(sc.k_rows, sc.k_rows + padded * static_cast<std::int64_t>(d_pad), 0.0f);
  std::fill(sc.vt, sc.vt + padded * dv, 0.0f);
  std::fill(sc.k_non_finite, sc.k_non_finite + padded / kBlock, std::uint8_t{0});
  HWY_ALIGN float value[kRowBuffer];
  for (std::int64_t j = 0; j < keys; ++j) {
    const std::int64_t block = j / kBlock, col = j % kBlock;
    const std::int64_t key = seq.k_begin + key_begin + j;
    float* row = sc.k_rows + j * static_cast<std::int64_t>(d_pad);
    ReadRow(p.k, p.k.Offset(seq.tensor_batch, key, kv_head, 0), depth, 1.0f, row);
    float* kt = sc.kt + block * depth * kBlock + col;
    for (std::int64_t c = 0; c < depth; ++c) kt[c * kBlock] = row[c];
    if (RowNonFinite(row, d_pad)) sc.k_non_finite[block] = 1;
    ReadRow(p.v, p.v.Offset(seq.tensor_batch, key, kv_head, 0), dv, 1.0f, value);
    float* vt = sc.vt + block * dv * kBlock + col;
    for (std::int64_t c = 0; c < dv; ++c) vt[c * kBlock] = value[c];
  }
}

// Loads query rows [row_begin, row_begin + rows) of `head`: Q times
// scale log2(e), dO, lse in base 2 and D. Rows past `rows` up to
// rows_padded are zero with lse2 = +inf, so they weigh nothing; so do rows
// that saw no key (lse = -inf).
inline void LoadRows(const BackwardContext& ctx, const core::SeqSpan& seq, std::int64_t head,
                     std::int64_t row_begin, std::size_t rows, std::size_t rows_padded,
                     const BackwardScratch& sc) {
  const core::Problem& p = *ctx.p;
  const auto* lse = static_cast<const float*>(p.lse->data);
  const std::size_t d_pad = ctx.d_pad, dv_pad = ctx.dv_pad;
  std::fill(sc.q_tile, sc.q_tile + rows_padded * d_pad, 0.0f);
  std::fill(sc.do_tile, sc.do_tile + rows_padded * dv_pad, 0.0f);
  std::fill(sc.lse2 + rows, sc.lse2 + rows_padded, std::numeric_limits<float>::infinity());
  std::fill(sc.dsum + rows, sc.dsum + rows_padded, 0.0f);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::int64_t local = row_begin + static_cast<std::int64_t>(r);
    const std::int64_t row = seq.q_begin + local;
    ReadRow(p.q, p.q.Offset(seq.tensor_batch, row, head, 0), p.head_dim, p.scale * kLog2e,
            sc.q_tile + r * d_pad);
    ReadRow(p.d_out, p.d_out.Offset(seq.tensor_batch, row, head, 0), p.head_dim_v, 1.0f,
            sc.do_tile + r * dv_pad);
    const float row_lse = lse[p.lse->Offset(seq.tensor_batch, head, row)];
    sc.lse2[r] = row_lse == -std::numeric_limits<float>::infinity()
                     ? std::numeric_limits<float>::infinity()
                     : row_lse * kLog2e;
    sc.dsum[r] = ctx.dsum[(seq.tensor_batch * p.heads_q + head) * p.q.shape[1] + row];
  }
}

// P = 2^(S - lse2) in place for the band's rows.
inline void Probabilities(float* s, const float* lse2, std::size_t rows) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes, kBlock = TileTraits::kKvBlock;
  for (std::size_t r = 0; r < rows; ++r) {
    const VF ref = hn::Set(d, lse2[r]);
    float* row = s + r * kBlock;
    for (std::size_t c = 0; c < kBlock; c += N) {
      hn::Store(Exp2NonPositive(hn::Sub(hn::Load(d, row + c), ref)), d, row + c);
    }
  }
}

// dS = P (dP - D) in place of dP, times d(softcap)/ds = 1 - tanh^2(s / cap)
// when capped. Where P is 0 (hidden keys, padding rows) dS is exactly 0,
// whatever an unseen value made dP.
inline void ScoreGradients(const core::Problem& p, const float* prob, const float* raw,
                           const float* dsum, std::size_t rows, float* dp) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes, kBlock = TileTraits::kKvBlock;
  const float cap = p.options.softcap;
  for (std::size_t r = 0; r < rows; ++r) {
    const VF row_d = hn::Set(d, dsum[r]);
    for (std::size_t c = 0; c < kBlock; c += N) {
      const std::size_t at = r * kBlock + c;
      const VF pr = hn::Load(d, prob + at);
      VF ds = hn::Mul(pr, hn::Sub(hn::Load(d, dp + at), row_d));
      if (cap > 0.0f) {
        const VF t = hn::Tanh(d, hn::Mul(hn::Load(d, raw + at), hn::Set(d, kLn2 / cap)));
        ds = hn::Mul(ds, hn::NegMulAdd(t, t, hn::Set(d, 1.0f)));
      }
      hn::Store(hn::IfThenZeroElse(hn::Eq(pr, hn::Zero(d)), ds), d, dp + at);
    }
  }
}

// dQ += dS K skipping keys of zero weight: for blocks whose K holds an inf
// or NaN, which must not reach rows that cannot see it (0 * NaN).
inline void DqSkippingZeros(const float* ds, std::size_t rows, std::size_t keys,
                            const float* k_rows, std::size_t d_pad, float* dq) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes;
  for (std::size_t r = 0; r < rows; ++r) {
    float* out = dq + r * d_pad;
    for (std::size_t j = 0; j < keys; ++j) {
      const float w = ds[r * TileTraits::kKvBlock + j];
      if (w == 0.0f) continue;
      const VF wv = hn::Set(d, w);
      for (std::size_t c = 0; c < d_pad; c += N) {
        hn::Store(hn::MulAdd(wv, hn::Load(d, k_rows + j * d_pad + c), hn::Load(d, out + c)), d,
                  out + c);
      }
    }
  }
}

// One query tile of one head against the packed chunk [key_begin, key_end);
// the chunk's share of the tile's dQ / scale goes to dq_share, rows_padded
// rows of d_pad floats.
inline void BackwardTile(const BackwardContext& ctx, const core::SeqSpan& seq,
                         std::int64_t seq_index, std::int64_t head, std::int64_t row_begin,
                         std::int64_t row_end, std::int64_t key_begin, std::int64_t key_end,
                         const core::Dropout& dropout, const BackwardScratch& sc,
                         float* dq_share) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  constexpr std::size_t kMicroRows = TileTraits::kMicroRows;
  constexpr std::size_t N = TileTraits::kLanes;
  const core::Problem& p = *ctx.p;
  const std::size_t d_pad = ctx.d_pad, dv_pad = ctx.dv_pad;
  const std::size_t depth = static_cast<std::size_t>(p.head_dim);
  const std::size_t dv = static_cast<std::size_t>(p.head_dim_v);
  const std::size_t rows = static_cast<std::size_t>(row_end - row_begin);
  const std::size_t rows_padded = (rows + kMicroRows - 1) / kMicroRows * kMicroRows;
  LoadRows(ctx, seq, head, row_begin, rows, rows_padded, sc);
  std::fill(dq_share, dq_share + rows_padded * d_pad, 0.0f);
  const core::KeyRange hull = TileKeys(p, seq, row_begin, row_end);
  const std::int64_t begin = std::max(hull.begin, key_begin);
  const std::int64_t end = std::min(hull.end, key_end);
  // Keys every row of the tile sees: blocks inside need no masking.
  const std::int64_t all_begin = p.Keys(seq, row_end - 1).begin;
  const std::int64_t all_end = p.Keys(seq, row_begin).end;
  const bool softcap = p.options.softcap > 0.0f;

  for (std::int64_t start = begin / kBlock * kBlock; start < end; start += kBlock) {
    const std::int64_t stop = std::min(start + kBlock, end);
    const bool whole = start >= all_begin && start + kBlock <= all_end;
    const Band band = whole ? Band{0, rows, rows_padded}
                            : RowsSeeingBlock(p, seq, row_begin, rows, start, stop);
    if (band.padded == 0) continue;
    const std::int64_t band_row = row_begin + static_cast<std::int64_t>(band.first);
    if (p.mask.data != nullptr &&
        MaskHidesBlock(p, seq_index, head, band_row, band.rows, start, stop)) {
      continue;
    }
    const std::int64_t block = (start - key_begin) / kBlock;
    const std::size_t keys = static_cast<std::size_t>(std::min(start + kBlock, key_end) - start);
    const float* kt = sc.kt + block * static_cast<std::int64_t>(depth) * kBlock;
    const float* vt = sc.vt + block * static_cast<std::int64_t>(dv) * kBlock;
    const float* k_rows = sc.k_rows + (start - key_begin) * static_cast<std::int64_t>(d_pad);
    float* s = sc.s + band.first * kBlock;
    float* dp = sc.dp + band.first * kBlock;
    const float* q_band = sc.q_tile + band.first * d_pad;
    const float* do_band = sc.do_tile + band.first * dv_pad;

    Gemm<false>(q_band, d_pad, 1, band.padded, depth, kt, kBlock, kBlock / N, s, kBlock);
    if (!whole) ApplyKeyRanges(p, seq, band_row, band.rows, start, s);
    float* raw = sc.raw + band.first * kBlock;
    if (softcap) std::copy(s, s + band.padded * kBlock, raw);
    if (p.has_score_mods()) {
      ApplyScoreMods(p, seq, seq_index, head, band_row, band.rows, start, s);
    }
    Probabilities(s, sc.lse2 + band.first, band.rows);
    // Rows that pad the band to whole micro groups but do not see the block
    // weigh nothing (the micro-kernels still run over them).
    std::fill(s + band.rows * kBlock, s + band.padded * kBlock, 0.0f);
    Gemm<false>(do_band, dv_pad, 1, band.padded, dv, vt, kBlock, kBlock / N, dp, kBlock);
    const float* p_kept = s;
    if (dropout.enabled()) {
      // Rows past band.rows hold P = 0 already.
      float* kept = sc.p_kept + band.first * kBlock;
      std::copy(s, s + band.padded * kBlock, kept);
      ApplyDropoutMask(dropout, seq_index, p.heads_q, head, band_row, band.rows, start, kept, dp);
      p_kept = kept;
    }
    ScoreGradients(p, s, raw, sc.dsum + band.first, band.padded, dp);
    // dV[keys] += P^T dO and dK[keys] += dS^T Q over the band's rows.
    Gemm<true>(p_kept, 1, kBlock, keys, band.rows, do_band, dv_pad, dv_pad / N,
               sc.dv_acc + (start - key_begin) * static_cast<std::int64_t>(dv_pad), dv_pad);
    Gemm<true>(dp, 1, kBlock, keys, band.rows, q_band, d_pad, d_pad / N,
               sc.dk_acc + (start - key_begin) * static_cast<std::int64_t>(d_pad), d_pad);
    float* dq = dq_share + band.first * d_pad;
    if (sc.k_non_finite[block]) {
      DqSkippingZeros(dp, band.padded, keys, k_rows, d_pad, dq);
    } else {
      Gemm<true>(dp, kBlock, 1, band.padded, keys, k_rows, d_pad, d_pad / N, dq, d_pad);
    }
  }
}

// grad[key][c] = scale * acc[key][c] over the chunk's keys of a k- or
// v-shaped gradient, or += for a later query segment (the first one of a
// (sequence, kv head) pair writes over the cleared gradient). Rounded to
// the gradient's dtype; a 16-bit gradient summed over segments is rounded
// once per segment.
inline void StoreKeyGradients(const TensorView& grad, const core::SeqSpan& seq,
                              std::int64_t kv_head, std::int64_t key_begin, std::int64_t keys,
                              std::int64_t dim, const float* acc, std::size_t acc_stride,
                              float scale, bool first_segment) {
  HWY_ALIGN float sum[kRowBuffer];
  for (std::int64_t j = 0; j < keys; ++j) {
    const std::int64_t at = grad.Offset(seq.tensor_batch, seq.k_begin + key_begin + j, kv_head, 0);
    const float* src = acc + j * static_cast<std::int64_t>(acc_stride);
    if (first_segment) {
      WriteRow(src, dim, scale, grad, at);
      continue;
    }
    ReadRow(grad, at, dim, 1.0f, sum);
    for (std::int64_t c = 0; c < dim; ++c) sum[c] += scale * src[c];
    WriteRow(sum, dim, 1.0f, grad, at);
  }
}

// One item: a chunk of keys against the task's query rows of every head of
// the group. Writes the dQ share of each tile it visits to its slots and
// stores (or adds) the chunk's dK and dV.
inline void RunBackwardItem(const BackwardContext& ctx, const BackwardTask& task,
                            std::int64_t chunk, const BackwardScratch& sc) {
  const core::Problem& p = *ctx.p;
  constexpr std::int64_t kRows = kBackwardQTileRows;
  const core::SeqSpan seq = p.Seq(task.seq);
  const std::int64_t key_begin = chunk * kBackwardChunkKeys;
  const std::int64_t key_end = std::min(seq.k_len, key_begin + kBackwardChunkKeys);
  const std::int64_t keys = key_end - key_begin;
  const std::size_t d_pad = ctx.d_pad, dv_pad = ctx.dv_pad;
  const core::Dropout dropout(p.options);
  PackChunk(p, seq, task.kv_head, key_begin, key_end, d_pad, sc);
  std::fill(sc.dk_acc, sc.dk_acc + keys * static_cast<std::int64_t>(d_pad), 0.0f);
  std::fill(sc.dv_acc, sc.dv_acc + keys * static_cast<std::int64_t>(dv_pad), 0.0f);
  const std::int64_t group = p.group_size();
  for (std::int64_t g = 0; g < group; ++g) {
    const std::int64_t head = task.kv_head * group + g;
    float* slot = ctx.slots + task.slot_offset +
                  (chunk * group + g) * task.slot_rows * static_cast<std::int64_t>(d_pad);
    for (std::int64_t row = task.row_begin; row < task.row_end; row += kRows) {
      const std::int64_t row_end = std::min(task.row_end, row + kRows);
      const core::KeyRange hull = TileKeys(p, seq, row, row_end);
      if (std::max(hull.begin, key_begin) >= std::min(hull.end, key_end)) continue;
      BackwardTile(ctx, seq, task.seq, head, row, row_end, key_begin, key_end, dropout, sc,
                   slot + (row - task.row_begin) * static_cast<std::int64_t>(d_pad));
    }
  }
  const bool first_segment = task.row_begin == 0;
  StoreKeyGradients(p.dk, seq, task.kv_head, key_begin, keys, p.head_dim, sc.dk_acc, d_pad, kLn2,
                    first_segment);
  StoreKeyGradients(p.dv, seq, task.kv_head, key_begin, keys, p.head_dim_v, sc.dv_acc, dv_pad,
                    1.0f, first_segment);
}

// dQ of the task's rows for one head: scale times the sum of the row's
// slots over the chunks its keys meet, in chunk order.
inline void ReduceDq(const BackwardContext& ctx, const BackwardTask& task, std::int64_t g,
                     std::int64_t row) {
  const DF d;
  constexpr std::size_t N = TileTraits::kLanes;
  const core::Problem& p = *ctx.p;
  const core::SeqSpan seq = p.Seq(task.seq);
  const std::int64_t group = p.group_size();
  const std::size_t d_pad = ctx.d_pad;
  HWY_ALIGN float sum[kRowBuffer];
  std::fill(sum, sum + d_pad, 0.0f);
  const core::KeyRange keys = p.Keys(seq, row);
  const std::int64_t chunk_floats = group * task.slot_rows * static_cast<std::int64_t>(d_pad);
  const float* slot = ctx.slots + task.slot_offset +
                      (g * task.slot_rows + row - task.row_begin) * static_cast<std::int64_t>(d_pad);
  for (std::int64_t c = keys.begin / kBackwardChunkKeys;
       keys.end > keys.begin && c * kBackwardChunkKeys < keys.end; ++c) {
    const float* share = slot + c * chunk_floats;
    for (std::size_t i = 0; i < d_pad; i += N) {
      hn::Store(hn::Add(hn::Load(d, sum + i), hn::Load(d, share + i)), d, sum + i);
    }
  }
  WriteRow(sum, p.head_dim, p.scale, p.dq, p.dq.Offset(seq.tensor_batch, seq.q_begin + row,
                                                         task.kv_head * group + g, 0));
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_BACKWARD_INL_H_
