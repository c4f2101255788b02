// The decode kernel's products per SIMD target (decode-inl.h runs them):
// the scores of one kv head's rows against one key or a block of 4
// (QkKey, QkQuad, with their transpose-add reductions), the online-softmax
// step across rows in the lanes, the weighted values with each head's
// output tile in registers (PvTile, PvBlock), cache rows widened to fp32 as
// they are loaded, and the Prefetcher that asks for the next block's cache
// lines in cache order at the pace the products read (docs/design.md).

#if defined(SALIENCE_KERNELS_SIMD_DECODE_TILES_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_DECODE_TILES_INL_H_
#undef SALIENCE_KERNELS_SIMD_DECODE_TILES_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_DECODE_TILES_INL_H_
#endif

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/half.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "kernels/simd/decode.h"
#include "kernels/simd/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

struct DecodeTraits {
  static constexpr std::size_t kLanes = TileTraits::kLanes;
  // Keys per online-softmax step: the score tile (32 keys x rows) stays in
  // L1, and the step's max/exp/rescale work is spread over 32 keys.
  static constexpr std::size_t kKeyBlock = 32;
  // Rows per dot-product register block: 4 accumulators plus the key
  // vector and 4 query vectors fit every target's register file.
  static constexpr std::size_t kRowGroup = 4;
  static_assert(kDecodeRowBudget % kLanes == 0);
};

inline float ToF32(float x) { return x; }
inline float ToF32(hwy::bfloat16_t x) {
  std::uint16_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return core::F32FromBF16(bits);
}
inline float ToF32(hwy::float16_t x) {
  std::uint16_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  return core::F32FromF16(bits);
}

// n elements of a cache row (element stride `stride`) in fp32, zero padded
// to whole vectors: the row itself when it is already fp32, unit stride and
// whole vectors, else widened into `buffer`.
template <typename T>
HWY_INLINE const float* RowAsF32(const T* HWY_RESTRICT src, std::int64_t stride,
                                 std::size_t n, std::size_t n_pad,
                                 float* HWY_RESTRICT buffer) {
  constexpr std::size_t N = DecodeTraits::kLanes;
  if constexpr (hwy::IsSame<T, float>()) {
    if (stride == 1 && n == n_pad) return src;
  }
  std::size_t c = 0;
  if (stride == 1) {
    const DF d;
    for (; c + N <= n; c += N) {
      if constexpr (hwy::IsSame<T, float>()) {
        hn::Store(hn::LoadU(d, src + c), d, buffer + c);
      } else {
        const hn::Rebind<T, DF> dh;
        hn::Store(hn::PromoteTo(d, hn::LoadU(dh, src + c)), d, buffer + c);
      }
    }
  }
  for (; c < n; ++c) buffer[c] = ToF32(src[c * stride]);
  std::fill(buffer + n, buffer + n_pad, 0.0f);
  return buffer;
}

// Issues one request: a prefetch of the line at `line` into every cache
// level (the Prefetcher's default; tests record the requests instead).
struct PrefetchLine {
  HWY_INLINE void operator()(const char* line) const { hwy::Prefetch(line); }
};

// Asks for the next block's cache lines while a block is computed, in
// cache order (the K rows of the block's keys, then their V rows; within a
// row the item's heads in order) and at the pace the products read: each
// step of a product asks for as many lines as it reads. DRAM then sees
// front-to-back streams whatever order the products read in, and no
// request waits long behind a burst of others. Every line needs its own
// request: the hardware prefetchers do not follow the products' order
// across 4 KiB pages (docs/design.md). A span's requests go to its first
// byte and every 64 bytes after it: where rows do not start on a line
// boundary, a span's last partial line is the next key's first (rows back
// to back) and is asked for with it; asking for it a second time, while
// it is in flight, cost bf16 30% on Zen 5.
template <class Issue = PrefetchLine>
class BasicPrefetcher {
 public:
  struct Part {
    const char* base;           // cache.k or cache.v
    const std::int64_t* rows;   // element offsets of the keys, head 0
    std::size_t element_bytes;  // of one element
    std::int64_t head_bytes;    // stride between heads
    std::size_t span;           // bytes of one request span
    std::size_t spans;          // spans per row (heads, or 1 if joined)
  };

  BasicPrefetcher() = default;  // asks for nothing
  BasicPrefetcher(const Part& k, const Part& v, std::int64_t first_head,
                  std::size_t keys, Issue issue = Issue())
      : parts_{k, v}, first_head_(first_head), keys_(keys), issue_(issue) {
    if (keys_ > 0) Seek();
  }

  // Asks for the next kLines lines: back to back, or kSpaced, one at a
  // time with the offset passed through memory, so that each request waits
  // for the previous one's store (store-to-load forwarding, about 5
  // cycles). fp32 products ask for twice the lines per FMA of 16-bit ones;
  // on Zen 5 their back-to-back requests read 21.8-22.7 GB/s, spaced ones
  // 25.2-30.4 (one thread, B=1, heads 32/8, D=128, 32k keys, four
  // alternated rounds), while spacing costs bf16 10% (29.6-30.2 ->
  // 25.8-27.2), whose arithmetic is the limit (docs/design.md).
  template <std::size_t kLines, bool kSpaced = false>
  HWY_INLINE void Step() {
    if (key_ >= keys_) return;
    if constexpr (kSpaced) {
      Lines<true>(kLines);
    } else if (offset_ + kLines * kLine <= span_) {
      for (std::size_t i = 0; i < kLines; ++i)
        issue_(at_ + offset_ + i * kLine);
      offset_ += kLines * kLine;
      if (offset_ == span_) Advance();
    } else {
      Lines(kLines);
    }
  }

  // Asks for the next `lines` lines, one at a time; kThroughMemory: each
  // offset loaded and stored as a relaxed atomic (a temporary reference per
  // access), which the compiler cannot keep in a register (the spacing of
  // Step<kLines, true>). The members are read again for every request, and
  // that is part of the spacing: holding the base and span in registers
  // (one load per request instead of five) cost fp32 9% on Zen 5.
  template <bool kThroughMemory = false>
  void Lines(std::size_t lines) {
    using Ref = std::atomic_ref<std::size_t>;
    for (; lines > 0 && key_ < keys_; --lines) {
      const std::size_t at = kThroughMemory
                                 ? Ref(offset_).load(std::memory_order_relaxed)
                                 : offset_;
      issue_(at_ + at);
      if constexpr (kThroughMemory) {
        Ref(offset_).store(at + kLine, std::memory_order_relaxed);
      } else {
        offset_ = at + kLine;
      }
      if (at + kLine >= span_) Advance();
    }
  }

 private:
  static constexpr std::size_t kLine = 64;

  // The next span: the next head of the row, else the next key's row of
  // the part, else (after the last key's K row) the first key's V row.
  void Advance() {
    offset_ = 0;
    const Part& part = parts_[part_];
    if (++span_index_ < part.spans) {
      at_ += part.head_bytes;
      return;
    }
    span_index_ = 0;
    if (++key_ == keys_ && part_ == 0) {
      part_ = 1;
      key_ = 0;
    }
    if (key_ < keys_) Seek();
  }

  // The first span of the current key's row of the current part.
  void Seek() {
    const Part& part = parts_[part_];
    const auto element_bytes = static_cast<std::int64_t>(part.element_bytes);
    at_ = part.base + part.rows[key_] * element_bytes +
          first_head_ * part.head_bytes;
    span_ = part.span;
  }

  Part parts_[2] = {};
  std::int64_t first_head_ = 0;
  std::size_t keys_ = 0;
  std::size_t key_ = 0, span_index_ = 0, span_ = 0;
  alignas(
      std::atomic_ref<std::size_t>::required_alignment) std::size_t offset_ = 0;
  int part_ = 0;
  const char* at_ = nullptr;
  [[no_unique_address]] Issue issue_;
};

using Prefetcher = BasicPrefetcher<>;

// Whether the products of a T cache space their requests (Prefetcher::
// Step): fp32 caches.
template <typename T>
inline constexpr bool kSpacedRequests = sizeof(T) == 4;

// Lines of the cache that `elements` elements of T cover (at least one:
// a step that reads less than a line asks for a whole one, so the
// requests run a little ahead).
template <typename T>
constexpr std::size_t LinesOf(std::size_t elements) {
  return std::max<std::size_t>(1, elements * sizeof(T) / 64);
}

// One vector of cache elements at p (unit stride) in fp32.
template <typename T>
HWY_INLINE VF LoadF32(const T* HWY_RESTRICT p) {
  const DF d;
  if constexpr (hwy::IsSame<T, float>()) {
    return hn::LoadU(d, p);
  } else {
    return hn::PromoteTo(d, hn::LoadU(hn::Rebind<T, DF>(), p));
  }
}

// The lane sums of four vectors, as one 128-bit vector {sum a, sum b,
// sum c, sum d}: each folded to 128 bits by adding halves, then a 4 x 4
// transpose-add (two interleave levels). A third of SumOfLanes' work for
// four sums, and one store. Needs 128-bit vectors (not the scalar target).
#if HWY_TARGET != HWY_SCALAR
HWY_INLINE hn::Vec<hn::Full128<float>> SumsOfFour(VF a, VF b, VF c, VF d) {
  const hn::Full128<float> d4;
  const hn::Full128<std::uint64_t> d64;
  const auto fold = [](VF v) {
    if constexpr (DecodeTraits::kLanes == 16) {
      const hn::Half<DF> d8;
      const hn::Half<hn::Half<DF>> d4h;
      const auto v8 = hn::Add(hn::LowerHalf(d8, v), hn::UpperHalf(d8, v));
      return hn::Add(hn::LowerHalf(d4h, v8), hn::UpperHalf(d4h, v8));
    } else if constexpr (DecodeTraits::kLanes == 8) {
      const hn::Half<DF> d4h;
      return hn::Add(hn::LowerHalf(d4h, v), hn::UpperHalf(d4h, v));
    } else {
      return v;
    }
  };
  const auto x0 = fold(a), x1 = fold(b), x2 = fold(c), x3 = fold(d);
  const auto s01 =
      hn::Add(hn::InterleaveLower(d4, x0, x1), hn::InterleaveUpper(d4, x0, x1));
  const auto s23 =
      hn::Add(hn::InterleaveLower(d4, x2, x3), hn::InterleaveUpper(d4, x2, x3));
  const auto w01 = hn::BitCast(d64, s01), w23 = hn::BitCast(d64, s23);
  return hn::Add(hn::BitCast(d4, hn::InterleaveLower(d64, w01, w23)),
                 hn::BitCast(d4, hn::InterleaveUpper(d64, w01, w23)));
}
#endif

// s[r] = q[r] . k for kRows rows (q rows d_pad apart) and one key row of
// d_pad unit-stride elements: a key vector loaded once serves kRows rows,
// and the rows' scores are stored side by side (one 128-bit store for 4).
template <typename T, std::size_t kRows>
HWY_INLINE void QkKey(const float* HWY_RESTRICT q, std::size_t d_pad,
                      const T* HWY_RESTRICT k, float* HWY_RESTRICT s) {
  const DF d;
  constexpr std::size_t N = DecodeTraits::kLanes;
  VF acc[kRows];
  for (std::size_t r = 0; r < kRows; ++r) acc[r] = hn::Zero(d);
  for (std::size_t c = 0; c < d_pad; c += N) {
    const VF key = LoadF32(k + c);
    for (std::size_t r = 0; r < kRows; ++r) {
      acc[r] = hn::MulAdd(hn::Load(d, q + r * d_pad + c), key, acc[r]);
    }
  }
#if HWY_TARGET != HWY_SCALAR
  if constexpr (kRows == 4) {
    hn::StoreU(SumsOfFour(acc[0], acc[1], acc[2], acc[3]), hn::Full128<float>(),
               s);
    return;
  }
#endif
  for (std::size_t r = 0; r < kRows; ++r) {
    s[r] = hn::GetLane(hn::SumOfLanes(d, acc[r]));
  }
}

#if HWY_TARGET <= HWY_AVX3
// The lane sums of 16 vectors a[0..16) as one vector, lane 4 k + m holding
// the sum of a[k + 4 m]: a transpose-add tree of four levels (each level
// halves the vectors and the lanes each input keeps), 45 instructions
// for 16 sums where folding each vector alone takes about 100.
HWY_INLINE VF SumsOfSixteen(const VF* HWY_RESTRICT a) {
  __m512 b[8], c[4], d[2];
  // 16 -> 8: blocks {0, 1} of b[i] hold a[2i]'s lanes folded to 8, {2, 3}
  // a[2i+1]'s.
  for (int i = 0; i < 8; ++i) {
    const __m512 x = a[2 * i].raw, y = a[2 * i + 1].raw;
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44),
                         _mm512_shuffle_f32x4(x, y, 0xEE));
  }
  // 8 -> 4: block k of c[i] holds a[4i + k] folded to 4 lanes.
  for (int i = 0; i < 4; ++i) {
    const __m512 x = b[2 * i], y = b[2 * i + 1];
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88),
                         _mm512_shuffle_f32x4(x, y, 0xDD));
  }
  // 4 -> 2: block k of d[i] holds a[8i + k] and a[8i + k + 4], 2 lanes
  // each.
  for (int i = 0; i < 2; ++i) {
    const __m512d x = _mm512_castps_pd(c[2 * i]),
                  y = _mm512_castps_pd(c[2 * i + 1]);
    d[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  // 2 -> 1: block k holds a[k], a[k + 4], a[k + 8], a[k + 12].
  return VF{_mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88),
                          _mm512_shuffle_ps(d[0], d[1], 0xDD))};
}
#endif

#if HWY_TARGET != HWY_SCALAR
// s[j * s_stride + r] = q[r] . k_j for 4 rows (q rows d_pad apart) and 4
// keys (unit-stride rows of d_pad elements): each query vector loaded
// serves 4 keys and each key vector 4 rows, so the 16 multiply-adds of a
// step need 8 loads, and the 16 sums share one reduction tree. Each step
// asks `prefetch` for as many lines as it reads.
template <typename T>
HWY_INLINE void QkQuad(const float* HWY_RESTRICT q, std::size_t d_pad,
                       const T* const* HWY_RESTRICT k, Prefetcher& prefetch,
                       float* HWY_RESTRICT s, std::size_t s_stride) {
  const DF d;
  constexpr std::size_t N = DecodeTraits::kLanes;
  const T* HWY_RESTRICT k0 = k[0];
  const T* HWY_RESTRICT k1 = k[1];
  const T* HWY_RESTRICT k2 = k[2];
  const T* HWY_RESTRICT k3 = k[3];
  VF acc[16];  // acc[4 r + j]: row r, key j
  for (std::size_t i = 0; i < 16; ++i) acc[i] = hn::Zero(d);
  for (std::size_t c = 0; c < d_pad; c += N) {
    prefetch.Step<LinesOf<T>(4 * N), kSpacedRequests<T>>();
    const VF key[4] = {LoadF32(k0 + c), LoadF32(k1 + c), LoadF32(k2 + c),
                       LoadF32(k3 + c)};
#pragma GCC unroll 4
    for (std::size_t r = 0; r < 4; ++r) {
      const VF query = hn::Load(d, q + r * d_pad + c);
#pragma GCC unroll 4
      for (std::size_t j = 0; j < 4; ++j)
        acc[4 * r + j] = hn::MulAdd(query, key[j], acc[4 * r + j]);
    }
  }
#if HWY_TARGET <= HWY_AVX3
  const __m512 sums = SumsOfSixteen(acc).raw;
  _mm_storeu_ps(s, _mm512_extractf32x4_ps(sums, 0));
  _mm_storeu_ps(s + s_stride, _mm512_extractf32x4_ps(sums, 1));
  _mm_storeu_ps(s + 2 * s_stride, _mm512_extractf32x4_ps(sums, 2));
  _mm_storeu_ps(s + 3 * s_stride, _mm512_extractf32x4_ps(sums, 3));
#else
  for (std::size_t j = 0; j < 4; ++j) {
    hn::StoreU(SumsOfFour(acc[j], acc[4 + j], acc[8 + j], acc[12 + j]),
               hn::Full128<float>(), s + j * s_stride);
  }
#endif
}
#endif

// Scores of `rows` consecutive rows against one key, kRowGroup at a time.
template <typename T>
HWY_INLINE void QkRows(const float* q, std::size_t d_pad, std::size_t rows,
                       const T* k, float* s) {
  constexpr std::size_t kGroup = DecodeTraits::kRowGroup;
  std::size_t r = 0;
  for (; r + kGroup <= rows; r += kGroup) {
    QkKey<T, kGroup>(q + r * d_pad, d_pad, k, s + r);
  }
  switch (rows - r) {
    case 3:
      QkKey<T, 3>(q + r * d_pad, d_pad, k, s + r);
      break;
    case 2:
      QkKey<T, 2>(q + r * d_pad, d_pad, k, s + r);
      break;
    case 1:
      QkKey<T, 1>(q + r * d_pad, d_pad, k, s + r);
      break;
    default:
      break;
  }
}

// The online-softmax step of N rows (the lanes) over the block's n keys,
// scores `stride` apart (hidden ones -inf): grows each running max, turns
// the scores into weights 2^(s - m') in place, updates the running sums,
// and stores alpha = 2^(m - m'), the factor for what each row accumulated
// before. A row that has seen nothing keeps max -inf and uses 0 as
// reference, so hidden scores give 0, never NaN.
HWY_INLINE void SoftmaxStep(float* HWY_RESTRICT s, std::size_t stride,
                            std::size_t n, float* HWY_RESTRICT row_max,
                            float* HWY_RESTRICT row_sum,
                            float* HWY_RESTRICT alpha) {
  const DF d;
  const VF neg_inf = hn::Set(d, -std::numeric_limits<float>::infinity());
  VF seen = hn::Load(d, s);
  for (std::size_t j = 1; j < n; ++j) {
    seen = hn::Max(seen, hn::Load(d, s + j * stride));
  }
  const VF old_max = hn::Load(d, row_max);
  const auto grows = hn::Gt(seen, old_max);
  const VF new_max = hn::IfThenElse(grows, seen, old_max);
  const VF factor = hn::IfThenElse(
      grows, Exp2NonPositive(hn::Sub(old_max, seen)), hn::Set(d, 1.0f));
  const VF ref = hn::IfThenZeroElse(hn::Eq(new_max, neg_inf), new_max);
  VF sum = hn::Zero(d);
  for (std::size_t j = 0; j < n; ++j) {
    const VF weight =
        Exp2NonPositive(hn::Sub(hn::Load(d, s + j * stride), ref));
    hn::Store(weight, d, s + j * stride);
    sum = hn::Add(sum, weight);
  }
  hn::Store(new_max, d, row_max);
  hn::Store(hn::MulAdd(hn::Load(d, row_sum), factor, sum), d, row_sum);
  hn::Store(factor, d, alpha);
}

// o[0 .. dv_pad) = alpha * o.
HWY_INLINE void ScaleRow(float* HWY_RESTRICT o, std::size_t dv_pad,
                         float alpha) {
  const DF d;
  const VF factor = hn::Set(d, alpha);
  for (std::size_t c = 0; c < dv_pad; c += DecodeTraits::kLanes) {
    hn::Store(hn::Mul(hn::Load(d, o + c), factor), d, o + c);
  }
}

// o[0 .. dv_pad) += w * v.
HWY_INLINE void AddWeightedRow(float* HWY_RESTRICT o, std::size_t dv_pad,
                               float w, const float* HWY_RESTRICT v) {
  const DF d;
  const VF weight = hn::Set(d, w);
  for (std::size_t c = 0; c < dv_pad; c += DecodeTraits::kLanes) {
    hn::Store(hn::MulAdd(weight, hn::LoadU(d, v + c), hn::Load(d, o + c)), d,
              o + c);
  }
}

// The weights of one key for kRows rows (p[0 .. kRows), contiguous in the
// key-major score tile), each in all lanes. Four rows take one 128-bit load
// and four in-register lane broadcasts instead of four broadcast loads:
// fewer loads per cache line read, and on Zen 5 one thread reads the bf16
// benchmark cache about 3% faster and the ragged one 1-7% (docs/design.md).
template <std::size_t kRows>
HWY_INLINE void KeyWeights(const float* HWY_RESTRICT p, VF* HWY_RESTRICT w) {
  const DF d;
#if HWY_TARGET != HWY_SCALAR
  if constexpr (kRows == 4) {
    const VF four = hn::LoadDup128(d, p);
    w[0] = hn::Broadcast<0>(four);
    w[1] = hn::Broadcast<1>(four);
    w[2] = hn::Broadcast<2>(four);
    w[3] = hn::Broadcast<3>(four);
    return;
  }
#endif
  for (std::size_t r = 0; r < kRows; ++r) w[r] = hn::Set(d, p[r]);
}

// O[r][0 .. kVecs N) += sum_j p[j][r] V[j][0 .. kVecs N) for kRows rows and
// the block's n keys of one kv head, value row j at v + rows_at[j] (weights
// of key j at p + j * p_stride). The accumulators stay in registers across
// the keys; each value vector is loaded (and widened) once for kRows rows.
// Each key asks `prefetch` for as many lines as it reads.
template <typename T, std::size_t kRows, std::size_t kVecs>
HWY_INLINE void PvTile(const float* HWY_RESTRICT p, std::size_t p_stride,
                       std::size_t n, const T* HWY_RESTRICT v,
                       const std::int64_t* HWY_RESTRICT rows_at,
                       Prefetcher& prefetch, float* HWY_RESTRICT o,
                       std::size_t dv_pad) {
  const DF d;
  constexpr std::size_t N = DecodeTraits::kLanes;
  VF acc[kRows][kVecs];
  for (std::size_t r = 0; r < kRows; ++r) {
    for (std::size_t c = 0; c < kVecs; ++c)
      acc[r][c] = hn::Load(d, o + r * dv_pad + c * N);
  }
  for (std::size_t j = 0; j < n; ++j) {
    prefetch.Step<LinesOf<T>(kVecs * N), kSpacedRequests<T>>();
    VF value[kVecs];
    for (std::size_t c = 0; c < kVecs; ++c)
      value[c] = LoadF32(v + rows_at[j] + c * N);
    VF weight[kRows];
    KeyWeights<kRows>(p + j * p_stride, weight);
    for (std::size_t r = 0; r < kRows; ++r) {
      for (std::size_t c = 0; c < kVecs; ++c)
        acc[r][c] = hn::MulAdd(weight[r], value[c], acc[r][c]);
    }
  }
  for (std::size_t r = 0; r < kRows; ++r) {
    for (std::size_t c = 0; c < kVecs; ++c)
      hn::Store(acc[r][c], d, o + r * dv_pad + c * N);
  }
}

// PvTile over all columns (dv_pad elements) of kRows rows.
template <typename T, std::size_t kRows>
HWY_INLINE void PvRowsAllColumns(const float* p, std::size_t p_stride,
                                 std::size_t n, const T* v,
                                 const std::int64_t* rows_at,
                                 Prefetcher& prefetch, float* o,
                                 std::size_t dv_pad) {
  constexpr std::size_t N = DecodeTraits::kLanes;
  constexpr std::size_t kVecs = TileTraits::kMicroVecs;
  std::size_t c = 0;
  for (; c + kVecs * N <= dv_pad; c += kVecs * N) {
    PvTile<T, kRows, kVecs>(p, p_stride, n, v + c, rows_at, prefetch, o + c,
                            dv_pad);
  }
  for (; c < dv_pad; c += N)
    PvTile<T, kRows, 1>(p, p_stride, n, v + c, rows_at, prefetch, o + c,
                        dv_pad);
}

// The block's weighted values for `rows` rows of one kv head that all see
// all n keys; the first rows' pass steps `prefetch`.
template <typename T>
HWY_INLINE void PvBlock(const float* p, std::size_t p_stride, std::size_t rows,
                        std::size_t n, const T* v, const std::int64_t* rows_at,
                        Prefetcher& prefetch, float* o, std::size_t dv_pad) {
  constexpr std::size_t kGroup = DecodeTraits::kRowGroup;
  Prefetcher none;
  std::size_t r = 0;
  for (; r + kGroup <= rows; r += kGroup) {
    PvRowsAllColumns<T, kGroup>(p + r, p_stride, n, v, rows_at,
                                r == 0 ? prefetch : none, o + r * dv_pad,
                                dv_pad);
  }
  Prefetcher& rest = r == 0 ? prefetch : none;
  const float* pr = p + r;
  float* orow = o + r * dv_pad;
  switch (rows - r) {
    case 3:
      PvRowsAllColumns<T, 3>(pr, p_stride, n, v, rows_at, rest, orow, dv_pad);
      break;
    case 2:
      PvRowsAllColumns<T, 2>(pr, p_stride, n, v, rows_at, rest, orow, dv_pad);
      break;
    case 1:
      PvRowsAllColumns<T, 1>(pr, p_stride, n, v, rows_at, rest, orow, dv_pad);
      break;
    default:
      break;
  }
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_DECODE_TILES_INL_H_
