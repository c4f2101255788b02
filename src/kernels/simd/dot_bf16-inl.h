// The bf16 dot-product tiles of the fused forward (AVX-512 target only).
//
// vdpbf16ps (AVX512_BF16) multiplies pairs of bf16 and adds both products
// to one fp32 lane: acc[i] += a[2i] b[2i] + a[2i+1] b[2i+1]. A zmm register
// holds 32 bf16, so each instruction does twice the multiply-adds of an
// fp32 FMA. The depth of both products is laid out in pairs:
//   S = Q K^T:  K packed [depth/2][kv_block][2] (two depths of one key per
//               lane), each query row broadcasts one (q[2t], q[2t+1]) pair;
//   O += P V:   V packed [kv_block/2][dv_pad][2] (two keys of one column per
//               lane), each row broadcasts one (p[2t], p[2t+1]) pair.
// Accumulators, the running max/sum, alpha and lse stay fp32; P is rounded
// to bf16 for the PV product (as FlashAttention does on GPUs). Scores are
// scaled by scale * log2(e) when the accumulators are stored, so Q is used
// exactly as the caller gave it.
//
// Highway 1.0 has no bf16 dot product and no target with AVX512_BF16, so
// these functions use the intrinsics under a function-level target
// attribute. They only run after forward.cc has seen the CPUID bit
// (CpuHasDotBf16); GCC does not inline them into the AVX3 callers, which
// costs one call per micro-tile (about 100k flops at head_dim 128).

#if defined(SALIENCE_KERNELS_SIMD_DOT_BF16_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_DOT_BF16_INL_H_
#undef SALIENCE_KERNELS_SIMD_DOT_BF16_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_DOT_BF16_INL_H_
#endif

#include "hwy/highway.h"

#if HWY_TARGET == HWY_AVX3
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>

#include "core/half.h"
#include "kernels/simd/forward-inl.h"

#define SALIENCE_DOT_BF16 \
  __attribute__((target(  \
      "avx512bf16,avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c,bmi2")))

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// 16 fp32 lanes; a register of bf16 pairs covers the same 16 lanes.
inline constexpr std::size_t kDotLanes = 16;
static_assert(TileTraits::kLanes == kDotLanes);

// Even depth: the pairs of Q and K (a zero pads an odd head_dim).
inline std::size_t DepthPairs(std::int64_t head_dim) {
  return static_cast<std::size_t>(head_dim + 1) / 2;
}

// The (x[2t], x[2t+1]) pair of a bf16 row as one 32-bit lane to broadcast.
inline std::uint32_t Pair(const std::uint16_t* row, std::size_t t) {
  std::uint32_t pair;
  std::memcpy(&pair, row + 2 * t, sizeof(pair));
  return pair;
}

// S[r][0 .. 16 kVecs) = scale * Q[r] . K^T for kRows rows; q rows hold
// `pairs` pairs, kt is the packed block [pairs][kv_block][2]. The row and
// column loops are unrolled outright: otherwise GCC 12 moves the 24
// accumulator registers through the stack around the depth loop, which cost
// the (shorter) PV product a fifth of its time (forward at N=4096, D=128 on
// one Zen 5 core: 346 -> 392 GFLOP/s).
template <std::size_t kRows, std::size_t kVecs>
SALIENCE_DOT_BF16 void QkDotBf16(const std::uint16_t* HWY_RESTRICT q,
                                 std::size_t pairs,
                                 const std::uint16_t* HWY_RESTRICT kt,
                                 float scale, float* HWY_RESTRICT s,
                                 std::size_t s_stride) {
  constexpr std::size_t kBlock = TileTraits::kKvBlock;
  __m512 acc[kRows][kVecs];
#pragma GCC unroll 8
  for (std::size_t r = 0; r < kRows; ++r) {
#pragma GCC unroll 8
    for (std::size_t c = 0; c < kVecs; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (std::size_t t = 0; t < pairs; ++t) {
    __m512bh key[kVecs];
#pragma GCC unroll 8
    for (std::size_t c = 0; c < kVecs; ++c) {
      key[c] =
          (__m512bh)_mm512_load_si512(kt + 2 * (t * kBlock + c * kDotLanes));
    }
#pragma GCC unroll 8
    for (std::size_t r = 0; r < kRows; ++r) {
      const auto query = (__m512bh)_mm512_set1_epi32(
          static_cast<int>(Pair(q + r * 2 * pairs, t)));
#pragma GCC unroll 8
      for (std::size_t c = 0; c < kVecs; ++c) {
        acc[r][c] = _mm512_dpbf16_ps(acc[r][c], query, key[c]);
      }
    }
  }
  const __m512 factor = _mm512_set1_ps(scale);
#pragma GCC unroll 8
  for (std::size_t r = 0; r < kRows; ++r) {
#pragma GCC unroll 8
    for (std::size_t c = 0; c < kVecs; ++c) {
      _mm512_store_ps(s + r * s_stride + c * kDotLanes,
                      _mm512_mul_ps(acc[r][c], factor));
    }
  }
}

// O[r][cols] = alpha[r] O[r][cols] + sum_t P[r][2t..2t+1] . V[2t..2t+1][cols]
// for kRows rows and 16 kVecs columns; p rows are kv_block bf16, v points at
// the block's first column pair, rows of dv_pad pairs.
template <std::size_t kRows, std::size_t kVecs>
SALIENCE_DOT_BF16 void PvDotBf16(const std::uint16_t* HWY_RESTRICT p,
                                 std::size_t key_pairs,
                                 const std::uint16_t* HWY_RESTRICT v,
                                 std::size_t dv_pad,
                                 const float* HWY_RESTRICT alpha,
                                 float* HWY_RESTRICT o) {
  constexpr std::size_t kBlock = TileTraits::kKvBlock;
  __m512 acc[kRows][kVecs];
#pragma GCC unroll 8
  for (std::size_t r = 0; r < kRows; ++r) {
    const __m512 scale = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 8
    for (std::size_t c = 0; c < kVecs; ++c) {
      acc[r][c] =
          _mm512_mul_ps(_mm512_load_ps(o + r * dv_pad + c * kDotLanes), scale);
    }
  }
  for (std::size_t t = 0; t < key_pairs; ++t) {
    __m512bh value[kVecs];
#pragma GCC unroll 8
    for (std::size_t c = 0; c < kVecs; ++c) {
      value[c] =
          (__m512bh)_mm512_load_si512(v + 2 * (t * dv_pad + c * kDotLanes));
    }
#pragma GCC unroll 8
    for (std::size_t r = 0; r < kRows; ++r) {
      const auto weight = (__m512bh)_mm512_set1_epi32(
          static_cast<int>(Pair(p + r * kBlock, t)));
#pragma GCC unroll 8
      for (std::size_t c = 0; c < kVecs; ++c) {
        acc[r][c] = _mm512_dpbf16_ps(acc[r][c], weight, value[c]);
      }
    }
  }
#pragma GCC unroll 8
  for (std::size_t r = 0; r < kRows; ++r) {
#pragma GCC unroll 8
    for (std::size_t c = 0; c < kVecs; ++c) {
      _mm512_store_ps(o + r * dv_pad + c * kDotLanes, acc[r][c]);
    }
  }
}

// Rounds rows of fp32 probabilities [rows][kv_block] to bf16, to nearest
// even (vcvtne2ps2bf16 packs two vectors; the second operand fills the low
// half).
SALIENCE_DOT_BF16 inline void RoundProbabilities(
    const float* HWY_RESTRICT s, std::size_t rows,
    std::uint16_t* HWY_RESTRICT p) {
  for (std::size_t at = 0; at < rows * TileTraits::kKvBlock;
       at += 2 * kDotLanes) {
    const __m512bh pair = _mm512_cvtne2ps_pbh(
        _mm512_load_ps(s + at + kDotLanes), _mm512_load_ps(s + at));
    _mm512_store_si512(p + at, (__m512i)pair);
  }
}

// Packs block `block_in_piece` of `piece` (bf16 K and V) into the pair
// layouts above. Keys past the chunk's end and the odd depth's pad are zero.
inline void PackBlockBf16Pairs(const core::Problem& p, const Piece& piece,
                               std::int64_t block_in_piece, std::size_t dv_pad,
                               std::int64_t block, PackedKv* packed) {
  constexpr std::int64_t kBlock = TileTraits::kKvBlock;
  const PieceBlockKeys keys = LocatePieceBlock(p, piece, block_in_piece);
  const std::int64_t count = keys.count;
  const std::int64_t depth = p.head_dim, dv = p.head_dim_v;
  const auto* k = static_cast<const std::uint16_t*>(p.k.data);
  const auto* v = static_cast<const std::uint16_t*>(p.v.data);
  const std::size_t pairs = DepthPairs(depth);

  auto* kt = reinterpret_cast<std::uint16_t*>(packed->KeyBlock(block));
  std::memset(kt, 0, sizeof(std::uint16_t) * 2 * pairs * kBlock);
  for (std::int64_t j = 0; j < count; ++j) {
    const std::uint16_t* src = k + keys.Offset(p.k, j);
    for (std::int64_t c = 0; c < depth; ++c) {
      kt[2 * ((c / 2) * kBlock + j) + c % 2] = src[c * p.k.strides[3]];
    }
  }

  auto* vb = reinterpret_cast<std::uint16_t*>(packed->ValueBlock(block));
  std::memset(vb, 0, sizeof(std::uint16_t) * kBlock * dv_pad);
  std::uint16_t exponent_all_ones = 0;  // any inf/NaN among the values
  for (std::int64_t j = 0; j < count; ++j) {
    const std::uint16_t* src = v + keys.Offset(p.v, j);
    std::uint16_t* dst =
        vb + 2 * ((j / 2) * static_cast<std::int64_t>(dv_pad)) + j % 2;
    for (std::int64_t c = 0; c < dv; ++c) {
      const std::uint16_t bits = src[c * p.v.strides[3]];
      dst[2 * c] = bits;
      exponent_all_ones |= (bits & 0x7f80u) == 0x7f80u;
    }
  }
  packed->SetValueNonFinite(block, exponent_all_ones != 0);
}

// The tiles of the dot-product path; members as F32Tiles (forward-inl.h).
struct Bf16DotTiles {
  static PackedKv::BlockFloats Block(std::size_t depth, std::size_t dv_pad) {
    // Two bf16 to a float.
    return {DepthPairs(static_cast<std::int64_t>(depth)) * TileTraits::kKvBlock,
            TileTraits::kKvBlock * dv_pad / 2};
  }
  // q_bf16, p_bf16 (two bf16 to a float) and v_widened.
  static std::size_t ExtraScratchFloats(std::size_t depth, std::size_t dv_pad) {
    constexpr std::size_t kRows = TileTraits::kQTileRows;
    return kRows * DepthPairs(static_cast<std::int64_t>(depth)) +
           kRows * TileTraits::kKvBlock / 2 + TileTraits::kKvBlock * dv_pad;
  }

  static void Pack(const core::Problem& p, const Piece& piece,
                   std::int64_t block_in_piece, std::size_t dv_pad,
                   std::int64_t block, PackedKv* packed) {
    PackBlockBf16Pairs(p, piece, block_in_piece, dv_pad, block, packed);
  }

  // Copies the query rows' bf16 bits, unscaled, as [rows][pairs][2]; the
  // pad column and rows past the tile's end are zero.
  static void LoadQueries(const core::Problem& p, const core::SeqSpan& seq,
                          std::int64_t head, std::int64_t row_begin,
                          std::size_t rows, std::size_t rows_padded,
                          const Scratch& sc) {
    const std::size_t width = 2 * DepthPairs(p.head_dim);
    const auto* q = static_cast<const std::uint16_t*>(p.q.data);
    std::fill(sc.q_bf16, sc.q_bf16 + rows_padded * width, std::uint16_t{0});
    for (std::size_t r = 0; r < rows; ++r) {
      const std::uint16_t* src =
          q +
          p.q.Offset(seq.tensor_batch, seq.q_begin + row_begin + r, head, 0);
      for (std::int64_t c = 0; c < p.head_dim; ++c) {
        sc.q_bf16[r * width + c] = src[c * p.q.strides[3]];
      }
    }
  }

  static void Scores(const ItemContext& ctx, const Scratch& sc,
                     std::int64_t block, const Band& band, float* s) {
    constexpr std::size_t kRows = TileTraits::kMicroRows;
    const std::size_t pairs = DepthPairs(ctx.p->head_dim);
    const auto* kt =
        reinterpret_cast<const std::uint16_t*>(ctx.packed->KeyBlock(block));
    for (std::size_t g = 0; g < band.padded; g += kRows) {
      QkDotBf16<kRows, TileTraits::kMicroVecs>(
          sc.q_bf16 + (band.first + g) * 2 * pairs, pairs, kt,
          ctx.p->scale * kLog2e, s + g * TileTraits::kKvBlock,
          TileTraits::kKvBlock);
    }
  }

  static const float* WidenedValues(const ItemContext& ctx, const Scratch& sc,
                                    std::int64_t block) {
    constexpr std::size_t kBlock = TileTraits::kKvBlock;
    const std::size_t dv_pad = ctx.dv_pad;
    const auto* vb =
        reinterpret_cast<const std::uint16_t*>(ctx.packed->ValueBlock(block));
    for (std::size_t j = 0; j < kBlock; ++j) {
      for (std::size_t c = 0; c < dv_pad; ++c) {
        sc.v_widened[j * dv_pad + c] =
            core::F32FromBF16(vb[2 * ((j / 2) * dv_pad + c) + j % 2]);
      }
    }
    return sc.v_widened;
  }

  static void Values(const ItemContext& ctx, const Scratch& sc,
                     std::int64_t block, const Band& band, std::size_t keys,
                     const float* s, const float* alpha, float* o) {
    constexpr std::size_t kRows = TileTraits::kMicroRows;
    constexpr std::size_t kBlock = TileTraits::kKvBlock;
    constexpr std::size_t kVecs = TileTraits::kMicroVecs;
    const std::size_t dv_pad = ctx.dv_pad;
    const std::size_t vecs = dv_pad / kDotLanes;
    // An odd tail key pairs with a zero key (packed V and P are 0 there).
    const std::size_t key_pairs = (keys + 1) / 2;
    const auto* v =
        reinterpret_cast<const std::uint16_t*>(ctx.packed->ValueBlock(block));
    std::uint16_t* p = sc.p_bf16 + band.first * kBlock;
    RoundProbabilities(s, band.padded, p);
    for (std::size_t g = 0; g < band.padded; g += kRows) {
      const std::uint16_t* p_rows = p + g * kBlock;
      float* o_rows = o + g * dv_pad;
      std::size_t c = 0;
      for (; c + kVecs <= vecs; c += kVecs) {
        PvDotBf16<kRows, kVecs>(p_rows, key_pairs, v + 2 * c * kDotLanes,
                                dv_pad, alpha + g, o_rows + c * kDotLanes);
      }
      const std::size_t rest = vecs - c;
      const std::uint16_t* v_rest = v + 2 * c * kDotLanes;
      float* o_rest = o_rows + c * kDotLanes;
      if (rest == 3)
        PvDotBf16<kRows, 3>(p_rows, key_pairs, v_rest, dv_pad, alpha + g,
                            o_rest);
      if (rest == 2)
        PvDotBf16<kRows, 2>(p_rows, key_pairs, v_rest, dv_pad, alpha + g,
                            o_rest);
      if (rest == 1)
        PvDotBf16<kRows, 1>(p_rows, key_pairs, v_rest, dv_pad, alpha + g,
                            o_rest);
    }
  }
};

// fp32 multiply-adds per second of the bf16 tiles over those of the fp32
// tiles, measured on the calling core with one S micro-tile at head_dim 128
// in L1 (best of several short runs, about 0.1 ms in all). The two paths do
// the same packing and softmax work; the micro-kernels are where their
// costs part.
inline double MeasureDotBf16Speedup() {
  constexpr std::size_t kRows = TileTraits::kMicroRows;
  constexpr std::size_t kVecs = TileTraits::kMicroVecs;
  constexpr std::size_t kBlock = TileTraits::kKvBlock;
  constexpr std::size_t kDepth = 128, kRepeats = 24, kTrials = 5;
  HWY_ALIGN float q[kRows * kDepth];
  HWY_ALIGN float kt[kDepth * kBlock];
  HWY_ALIGN float s[kRows * kBlock];
  HWY_ALIGN std::uint16_t q_bf16[kRows * kDepth];
  HWY_ALIGN std::uint16_t kt_bf16[kDepth * kBlock];
  for (std::size_t i = 0; i < kRows * kDepth; ++i)
    q[i] = 0.01f * static_cast<float>(i % 7);
  for (std::size_t i = 0; i < kDepth * kBlock; ++i)
    kt[i] = 0.01f * static_cast<float>(i % 5);
  for (std::size_t i = 0; i < kRows * kDepth; ++i)
    q_bf16[i] = core::BF16FromF32(q[i]);
  for (std::size_t i = 0; i < kDepth * kBlock; ++i)
    kt_bf16[i] = core::BF16FromF32(kt[i]);
  const auto best_seconds = [&](auto&& tile) {
    double best = 1e30;
    for (std::size_t trial = 0; trial < kTrials; ++trial) {
      const auto start = std::chrono::steady_clock::now();
      for (std::size_t i = 0; i < kRepeats; ++i) tile();
      const std::chrono::duration<double> took =
          std::chrono::steady_clock::now() - start;
      best = std::min(best, took.count());
    }
    return best;
  };
  const double f32 = best_seconds([&] {
    QkMicroTile<kRows, kVecs>(q, kDepth, kt, kDepth, s, kBlock);
    __asm__ volatile("" : : "r"(s) : "memory");  // keep the stores
  });
  const double dot = best_seconds([&] {
    QkDotBf16<kRows, kVecs>(q_bf16, kDepth / 2, kt_bf16, 1.0f, s, kBlock);
    __asm__ volatile("" : : "r"(s) : "memory");  // keep the stores
  });
  return f32 / dot;
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#undef SALIENCE_DOT_BF16
#endif  // HWY_TARGET == HWY_AVX3

#endif  // SALIENCE_KERNELS_SIMD_DOT_BF16_INL_H_
