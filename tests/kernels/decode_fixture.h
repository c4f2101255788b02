// The fixture of the decode tests: a random case (DecodeCase) and its
// buffers (DecodeData: q, a contiguous or paged cache in flash-attn's or the
// heads-major layout, appended rows), one call of the fast path or the fp64
// reference on fresh copies of the cache (RunDecode), and the comparison of
// the two (ExpectClose, CheckCase under every SIMD target).
//
// Cache rows a sequence must not read (past its length, in pages it does not
// own) hold NaN, so a kernel that reads them poisons its result.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/half.h"
#include "kernels/simd/forward.h"
#include "salience/decode.h"

namespace salience::decode_testing {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct DecodeCase {
  std::int64_t seq_q = 1, heads_q = 4, heads_kv = 2;
  std::int64_t head_dim = 32, head_dim_v = 32;
  std::vector<std::int32_t> cache_lens = {5, 40};  // one per sequence
  // Left padding per sequence (cache.leftpad), empty for none: the cache
  // positions before it hold NaN, and block-table entries of pages wholly
  // before it are invalid, so a kernel that reads them fails.
  std::vector<std::int32_t> leftpad;
  std::int64_t seqlen_new = 0;
  std::int64_t page_size = 0;  // 0: contiguous cache
  DType dtype = DType::kF32;   // the cache's
  DType q_dtype = DType::kF32, out_dtype = DType::kF32;
  bool strided_q = false;  // q and out as [B, H, N, D] memory
  // A contiguous cache as [B, H, N, D] memory (Hugging Face's layout): a
  // key's heads are not back to back.
  bool heads_major_cache = false;
  AttentionOptions options;
  std::uint64_t seed = 7;

  std::int64_t batch() const {
    return static_cast<std::int64_t>(cache_lens.size());
  }
};

// A 16-bit or fp32 buffer of elements, filled with values rounded to dtype.
struct Elements {
  DType dtype = DType::kF32;
  std::vector<std::uint8_t> bytes;
  void Resize(DType t, std::int64_t count) {
    dtype = t;
    bytes.assign(static_cast<std::size_t>(count) * DTypeSize(t), 0);
  }
  void* data() { return bytes.data(); }
  void Set(std::int64_t at, float value) {
    TensorView view;
    view.data = bytes.data();
    view.dtype = dtype;
    core::StoreFloat(view, at, value);
  }
  float Get(std::int64_t at) const {
    TensorView view;
    view.data = const_cast<std::uint8_t*>(bytes.data());
    view.dtype = dtype;
    return core::LoadFloat(view, at);
  }
};

// Every tensor of a case: the cache (contiguous or paged), the new rows,
// q, and the block table.
struct DecodeData {
  DecodeCase c;
  std::vector<float> q;
  Elements k_cache, v_cache, k_new, v_new;
  std::vector<std::int32_t> block_table;
  std::int64_t capacity = 0, max_pages = 0, num_pages = 0;

  explicit DecodeData(const DecodeCase& dc) : c(dc) {
    std::mt19937_64 rng(c.seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const std::int64_t b_count = c.batch();
    std::int64_t longest = 0;
    for (std::int32_t len : c.cache_lens)
      longest = std::max<std::int64_t>(longest, len);
    capacity = longest + c.seqlen_new + 3;
    q.resize(b_count * c.seq_q * c.heads_q * c.head_dim);
    for (float& x : q) x = normal(rng);
    const std::int64_t k_row = c.heads_kv * c.head_dim,
                       v_row = c.heads_kv * c.head_dim_v;
    std::int64_t rows = b_count * capacity;
    if (c.page_size > 0) {
      max_pages = (capacity + c.page_size - 1) / c.page_size;
      num_pages = b_count * max_pages + 2;  // two pages nobody owns
      rows = num_pages * c.page_size;
      // Pages in shuffled order; table entries past a sequence's last
      // needed page are invalid (-1): they must never be looked at.
      std::vector<std::int32_t> ids(num_pages);
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng);
      block_table.assign(b_count * max_pages, -1);
      std::size_t next = 0;
      for (std::int64_t b = 0; b < b_count; ++b) {
        const std::int64_t len = c.cache_lens[b] + c.seqlen_new;
        const std::int64_t first = Start(b) / c.page_size;
        for (std::int64_t p = first; p < (len + c.page_size - 1) / c.page_size;
             ++p) {
          block_table[b * max_pages + p] = ids[next++];
        }
      }
    }
    k_cache.Resize(c.dtype, rows * k_row);
    v_cache.Resize(c.dtype, rows * v_row);
    for (std::int64_t e = 0; e < rows * k_row; ++e) k_cache.Set(e, kNaN);
    for (std::int64_t e = 0; e < rows * v_row; ++e) v_cache.Set(e, kNaN);
    for (std::int64_t b = 0; b < b_count; ++b) {
      for (std::int64_t j = Start(b); j < c.cache_lens[b]; ++j) {
        for (std::int64_t e = 0; e < k_row; ++e)
          k_cache.Set(CacheIndex(b, j, e, c.head_dim), normal(rng));
        for (std::int64_t e = 0; e < v_row; ++e)
          v_cache.Set(CacheIndex(b, j, e, c.head_dim_v), normal(rng));
      }
    }
    if (c.seqlen_new > 0) {
      k_new.Resize(c.dtype, b_count * c.seqlen_new * k_row);
      v_new.Resize(c.dtype, b_count * c.seqlen_new * v_row);
      for (std::int64_t e = 0; e < b_count * c.seqlen_new * k_row; ++e)
        k_new.Set(e, normal(rng));
      for (std::int64_t e = 0; e < b_count * c.seqlen_new * v_row; ++e)
        v_new.Set(e, normal(rng));
    }
  }

  // Cache position of sequence b's first key.
  std::int64_t Start(std::int64_t b) const {
    return c.leftpad.empty() ? 0 : c.leftpad[b];
  }

  // Row (on the cache's flattened first two axes) of cache position j of
  // sequence b.
  std::int64_t CacheRow(std::int64_t b, std::int64_t j) const {
    if (c.page_size == 0) return b * capacity + j;
    return std::int64_t{block_table[b * max_pages + j / c.page_size]} *
               c.page_size +
           j % c.page_size;
  }

  // Element index of element e (head e / dim, column e % dim) of key j of
  // sequence b in a cache whose rows hold `dim` columns per head.
  std::int64_t CacheIndex(std::int64_t b, std::int64_t j, std::int64_t e,
                          std::int64_t dim) const {
    if (c.heads_major_cache) {
      // [B, H, capacity, dim], or pages as [H, page_size, dim].
      const std::int64_t extent = c.page_size > 0 ? c.page_size : capacity;
      const std::int64_t row = CacheRow(b, j);
      return ((row / extent * c.heads_kv + e / dim) * extent + row % extent) *
                 dim +
             e % dim;
    }
    return CacheRow(b, j) * c.heads_kv * dim + e;
  }

  TensorView Attention(void* data, DType t, std::int64_t seq,
                       std::int64_t heads, std::int64_t dim,
                       bool strided) const {
    return strided ? TensorView::Bhnd(data, t, c.batch(), seq, heads, dim)
                   : TensorView::Bnhd(data, t, c.batch(), seq, heads, dim);
  }

  // The cache views over (copies of) the cache buffers.
  KvCache Cache(Elements& k, Elements& v) {
    KvCache cache;
    const std::int64_t first = c.page_size > 0 ? num_pages : c.batch();
    const std::int64_t second = c.page_size > 0 ? c.page_size : capacity;
    const auto view = c.heads_major_cache ? TensorView::Bhnd : TensorView::Bnhd;
    cache.k = view(k.data(), c.dtype, first, second, c.heads_kv, c.head_dim);
    cache.v = view(v.data(), c.dtype, first, second, c.heads_kv, c.head_dim_v);
    cache.seqlens = c.cache_lens;
    cache.leftpad = c.leftpad;
    if (c.page_size > 0) {
      cache.block_table = {block_table.data(), c.batch(), max_pages, max_pages};
    }
    if (c.seqlen_new > 0) {
      cache.k_new = TensorView::Bnhd(k_new.data(), c.dtype, c.batch(),
                                     c.seqlen_new, c.heads_kv, c.head_dim);
      cache.v_new = TensorView::Bnhd(v_new.data(), c.dtype, c.batch(),
                                     c.seqlen_new, c.heads_kv, c.head_dim_v);
    }
    return cache;
  }
};

struct Outputs {
  std::vector<float> out, lse;
  Elements k, v;  // the cache after the call
};

// The tensors of one call besides the cache: q (data.q rounded to the
// case's q dtype), out (of its out dtype) and lse, out and lse holding NaN
// so that every element must be written, with the case's views over them.
// Not copyable: the views point into its buffers.
struct CallTensors {
  Elements q_elements, out_elements;
  std::vector<float> lse_values;
  TensorView q, out, lse;

  explicit CallTensors(const DecodeData& data) {
    const DecodeCase& c = data.c;
    q_elements.Resize(c.q_dtype, static_cast<std::int64_t>(data.q.size()));
    for (std::size_t e = 0; e < data.q.size(); ++e) {
      q_elements.Set(static_cast<std::int64_t>(e), data.q[e]);
    }
    const std::int64_t out_count =
        c.batch() * c.seq_q * c.heads_q * c.head_dim_v;
    out_elements.Resize(c.out_dtype, out_count);
    for (std::int64_t e = 0; e < out_count; ++e) out_elements.Set(e, kNaN);
    lse_values.assign(c.batch() * c.heads_q * c.seq_q, kNaN);
    q = data.Attention(q_elements.data(), c.q_dtype, c.seq_q, c.heads_q,
                       c.head_dim, c.strided_q);
    out = data.Attention(out_elements.data(), c.out_dtype, c.seq_q, c.heads_q,
                         c.head_dim_v, c.strided_q);
    lse = TensorView::Contiguous(lse_values.data(), DType::kF32, 3,
                                 {c.batch(), c.heads_q, c.seq_q});
  }
  CallTensors(const CallTensors&) = delete;
  CallTensors& operator=(const CallTensors&) = delete;
};

inline std::vector<float> Widened(const Elements& e) {
  std::vector<float> values(e.bytes.size() / DTypeSize(e.dtype));
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = e.Get(static_cast<std::int64_t>(i));
  }
  return values;
}

// Runs the fast path (reference = false) or the reference on fresh copies
// of the cache; out is returned widened to fp32.
inline Outputs RunDecode(DecodeData& data, bool reference, int threads = 1) {
  Outputs result;
  result.k = data.k_cache;
  result.v = data.v_cache;
  CallTensors call(data);
  AttentionOptions options = data.c.options;
  options.num_threads = threads;
  const KvCache cache = data.Cache(result.k, result.v);
  const Status status =
      reference
          ? AttentionWithKvCacheReference(call.q, cache, call.out, options,
                                          &call.lse)
          : AttentionWithKvCache(call.q, cache, call.out, options, &call.lse);
  EXPECT_TRUE(status.ok()) << status.ToString();
  result.out = Widened(call.out_elements);
  result.lse = std::move(call.lse_values);
  return result;
}

// What ExpectClose allows out of a given dtype, relative to the reference's
// magnitude: a 16-bit out is within two roundings (the fast path's and the
// reference's).
inline double OutTolerance(DType out_dtype) {
  return out_dtype == DType::kBF16  ? 1.6e-2
         : out_dtype == DType::kF16 ? 2e-3
                                    : 2e-5;
}

// Largest |fast - ref| over out, relative to the reference's magnitude
// (at most out_tolerance), and over lse (absolute, with lse's magnitude).
inline void ExpectClose(const Outputs& fast, const Outputs& ref,
                        const std::string& what, double out_tolerance = 2e-5) {
  double out_scale = 1.0, out_error = 0.0, lse_error = 0.0;
  for (float x : ref.out) out_scale = std::max(out_scale, std::fabs(double{x}));
  for (std::size_t e = 0; e < ref.out.size(); ++e) {
    ASSERT_FALSE(std::isnan(fast.out[e]))
        << what << ": out[" << e << "] is NaN";
    out_error =
        std::max(out_error, std::fabs(double{fast.out[e]} - ref.out[e]));
  }
  for (std::size_t e = 0; e < ref.lse.size(); ++e) {
    if (ref.lse[e] == kNegInf) {
      ASSERT_EQ(fast.lse[e], kNegInf) << what << ": lse[" << e << "]";
      continue;
    }
    lse_error =
        std::max(lse_error, std::fabs(double{fast.lse[e]} - ref.lse[e]) /
                                std::max(1.0, std::fabs(double{ref.lse[e]})));
  }
  EXPECT_LE(out_error / out_scale, out_tolerance) << what;
  EXPECT_LE(lse_error, 2e-5) << what;
}

// The fast path under every runnable target against the reference, and the
// cache after the append identical between them.
inline void CheckCase(const DecodeCase& c, const std::string& what) {
  DecodeData data(c);
  const Outputs ref = RunDecode(data, true);
  for (std::int64_t target : simd::RunnableTargets()) {
    simd::ScopedTarget scoped(target);
    const std::string name = what + " [" + simd::TargetName(target) + "]";
    const Outputs fast = RunDecode(data, false);
    ExpectClose(fast, ref, name, OutTolerance(c.out_dtype));
    EXPECT_EQ(0, std::memcmp(fast.k.bytes.data(), ref.k.bytes.data(),
                             ref.k.bytes.size()))
        << name << ": k cache after append";
    EXPECT_EQ(0, std::memcmp(fast.v.bytes.data(), ref.v.bytes.data(),
                             ref.v.bytes.size()))
        << name << ": v cache after append";
  }
}

inline const char* DTypeLabel(DType t) { return DTypeName(t); }

}  // namespace salience::decode_testing
