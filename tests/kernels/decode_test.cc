// The decode path (salience/decode.h) against its fp64 reference, under every
// SIMD target the CPU can run: contiguous and paged caches (pages shuffled,
// unused table entries invalid), fp32/bf16/fp16 caches, every option, ragged
// lengths around page and split boundaries, appends, bitwise determinism
// across thread counts, bad inputs; and MergeAttentionStates.
//
// Cache rows a sequence must not read (past its length, in pages it does not
// own) hold NaN, so a kernel that reads them poisons its result.
#include "kernels/simd/decode.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/validate_decode.h"
#include "kernels/simd/forward.h"
#include "salience/decode.h"

namespace salience {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct DecodeCase {
  std::int64_t seq_q = 1, heads_q = 4, heads_kv = 2;
  std::int64_t head_dim = 32, head_dim_v = 32;
  std::vector<std::int32_t> cache_lens = {5, 40};  // one per sequence
  std::int64_t seqlen_new = 0;
  std::int64_t page_size = 0;  // 0: contiguous cache
  DType dtype = DType::kF32;
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
        for (std::int64_t p = 0; p < (len + c.page_size - 1) / c.page_size;
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
      for (std::int64_t j = 0; j < c.cache_lens[b]; ++j) {
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

  // Row (on the cache's flattened first two axes) of key j of sequence b.
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

// Runs the fast path (reference = false) or the reference on fresh copies
// of the cache; out starts as NaN so every element must be written.
Outputs RunDecode(DecodeData& data, bool reference, int threads = 1) {
  const DecodeCase& c = data.c;
  Outputs result;
  result.k = data.k_cache;
  result.v = data.v_cache;
  result.out.assign(c.batch() * c.seq_q * c.heads_q * c.head_dim_v, kNaN);
  result.lse.assign(c.batch() * c.heads_q * c.seq_q, kNaN);
  const TensorView q = data.Attention(data.q.data(), DType::kF32, c.seq_q,
                                      c.heads_q, c.head_dim, c.strided_q);
  const TensorView out = data.Attention(result.out.data(), DType::kF32, c.seq_q,
                                        c.heads_q, c.head_dim_v, c.strided_q);
  const TensorView lse = TensorView::Contiguous(
      result.lse.data(), DType::kF32, 3, {c.batch(), c.heads_q, c.seq_q});
  AttentionOptions options = c.options;
  options.num_threads = threads;
  const KvCache cache = data.Cache(result.k, result.v);
  const Status status =
      reference ? AttentionWithKvCacheReference(q, cache, out, options, &lse)
                : AttentionWithKvCache(q, cache, out, options, &lse);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return result;
}

// Largest |fast - ref| over out, relative to the reference's magnitude,
// and over lse (absolute, with lse's magnitude).
void ExpectClose(const Outputs& fast, const Outputs& ref,
                 const std::string& what) {
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
  EXPECT_LE(out_error / out_scale, 2e-5) << what;
  EXPECT_LE(lse_error, 2e-5) << what;
}

// The fast path under every runnable target against the reference, and the
// cache after the append identical between them.
void CheckCase(const DecodeCase& c, const std::string& what) {
  DecodeData data(c);
  const Outputs ref = RunDecode(data, true);
  for (std::int64_t target : simd::RunnableTargets()) {
    simd::ScopedTarget scoped(target);
    const std::string name = what + " [" + simd::TargetName(target) + "]";
    const Outputs fast = RunDecode(data, false);
    ExpectClose(fast, ref, name);
    EXPECT_EQ(0, std::memcmp(fast.k.bytes.data(), ref.k.bytes.data(),
                             ref.k.bytes.size()))
        << name << ": k cache after append";
    EXPECT_EQ(0, std::memcmp(fast.v.bytes.data(), ref.v.bytes.data(),
                             ref.v.bytes.size()))
        << name << ": v cache after append";
  }
}

const char* DTypeLabel(DType t) { return DTypeName(t); }

TEST(DecodeTest, EveryOptionEveryCacheKind) {
  std::vector<std::pair<std::string, DecodeCase>> cases;
  auto add = [&](const std::string& name, auto edit) {
    DecodeCase c;
    edit(c);
    cases.emplace_back(name, c);
  };
  add("gqa", [](DecodeCase&) {});
  add("mqa", [](DecodeCase& c) { c.heads_q = 8, c.heads_kv = 1; });
  add("mha", [](DecodeCase& c) { c.heads_q = 3, c.heads_kv = 3; });
  add("queries3", [](DecodeCase& c) { c.seq_q = 3; });
  add("causal", [](DecodeCase& c) {
    c.seq_q = 5, c.options.causal = Causal::kBottomRight;
  });
  add("causal_top_left",
      [](DecodeCase& c) { c.seq_q = 4, c.options.causal = Causal::kTopLeft; });
  add("window", [](DecodeCase& c) {
    c.seq_q = 4, c.options.window_left = 6, c.options.window_right = 1;
  });
  add("window_causal", [](DecodeCase& c) {
    c.seq_q = 2, c.options.causal = Causal::kBottomRight,
    c.options.window_left = 9;
  });
  add("softcap",
      [](DecodeCase& c) { c.options.softcap = 2.5f, c.options.scale = 0.7f; });
  add("alibi", [](DecodeCase& c) {
    c.seq_q = 2;
    static const std::vector<float> slopes = {0.5f, 0.25f, 0.125f, 0.0625f};
    c.options.alibi_slopes = slopes;
  });
  add("alibi_per_batch", [](DecodeCase& c) {
    static const std::vector<float> slopes = {0.5f,  0.2f, 0.1f, 0.3f,
                                              0.05f, 0.4f, 0.7f, 0.9f};
    c.options.alibi_slopes = slopes;
  });
  add("head_dim_tail",
      [](DecodeCase& c) { c.head_dim = 40, c.head_dim_v = 24; });
  add("strided_q", [](DecodeCase& c) { c.strided_q = true, c.seq_q = 3; });
  add("append", [](DecodeCase& c) { c.seqlen_new = 2, c.seq_q = 2; });
  add("append_causal", [](DecodeCase& c) {
    c.seqlen_new = 3, c.seq_q = 3, c.options.causal = Causal::kBottomRight;
  });
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (std::int64_t page :
         {std::int64_t{0}, std::int64_t{16}, std::int64_t{7}}) {
      for (auto [name, c] : cases) {
        c.dtype = dtype;
        c.page_size = page;
        CheckCase(c, name + " " + DTypeLabel(dtype) + " page " +
                         std::to_string(page));
      }
    }
  }
}

TEST(DecodeTest, RaggedLengthsAroundPagesAndSplits) {
  DecodeCase c;
  c.page_size = 16;
  c.cache_lens = {0,  1,  15,
                  16, 17, 2 * static_cast<std::int32_t>(simd::kSplitKeys) + 5};
  c.heads_q = 4, c.heads_kv = 1, c.head_dim = 16, c.head_dim_v = 16;
  CheckCase(c, "ragged paged");
  c.seqlen_new = 1;
  CheckCase(c, "ragged paged append");
  c.page_size = 0;
  c.seqlen_new = 0;
  c.options.causal = Causal::kBottomRight;
  c.seq_q = 2;
  CheckCase(c, "ragged contiguous causal");
}

TEST(DecodeTest, LargePagesAndManyQueries) {
  DecodeCase c;
  c.page_size = 256;
  c.cache_lens = {300, 700};
  c.seq_q = 16, c.heads_q = 16, c.heads_kv = 2;  // 128 rows per kv head
  c.options.causal = Causal::kBottomRight;
  CheckCase(c, "page 256, 16 queries");
  c.seq_q = 20;  // more rows per kv head than one item holds
  c.page_size = 0;
  CheckCase(c, "row tiles");
}

// The benchmark's head_dim 128 and 8 or 16 kv heads in one item: several
// 32-key blocks whose values are taken head by head with the output tiles
// in registers, splits, and a causal tail whose last block every row does
// not see (the key-at-a-time path).
TEST(DecodeTest, LongCachesHeadDim128) {
  for (std::int64_t heads_kv : {8, 16}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      DecodeCase c;
      c.heads_kv = heads_kv, c.heads_q = 2 * heads_kv;
      c.head_dim = 128, c.head_dim_v = 128;
      c.cache_lens = {2100, 77};
      c.seq_q = 2, c.options.causal = Causal::kBottomRight;
      c.dtype = dtype;
      CheckCase(c, std::to_string(heads_kv) + " kv heads " + DTypeLabel(dtype));
    }
  }
}

// A heads-major cache ([B, H, N, D] memory, or pages stored [H, page_size,
// D]): each head's rows are read and requested on their own, in items of
// two kv heads and one (3 kv heads);
// 4-row groups (the 4-key score blocks), 6 rows (one block and two rows
// left; 12 rows per item leave padding lanes), 16 rows, and key counts
// that leave 1-3 keys after the last whole group of 4.
TEST(DecodeTest, HeadsMajorCache) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (const std::int64_t group : {2, 3, 8}) {
      DecodeCase c;
      c.heads_major_cache = true;
      c.heads_kv = 3, c.heads_q = 3 * group, c.seq_q = 2;
      c.head_dim = 64, c.head_dim_v = 64;
      c.cache_lens = {2101, 66, 0, 35};
      c.seqlen_new = group == 3 ? 1 : 0;
      c.options.causal = Causal::kBottomRight;
      c.dtype = dtype;
      CheckCase(c, "heads-major " + std::string(DTypeLabel(dtype)) +
                       " group " + std::to_string(group));
      // Pages stored [H, page_size, D]: each page's heads on their own.
      c.page_size = 16;
      CheckCase(c, "heads-major pages " + std::string(DTypeLabel(dtype)) +
                       " group " + std::to_string(group));
    }
  }
}

// Items take every kv head where a key's heads are adjacent, and at most
// simd::kHeadMajorHeads where the cache is head-major.
TEST(DecodeTest, PlanGroupsHeadsByLayout) {
  for (const bool heads_major : {false, true}) {
    DecodeCase c;
    c.heads_major_cache = heads_major;
    c.heads_kv = 5, c.heads_q = 20;
    c.cache_lens = {static_cast<std::int32_t>(simd::kSplitKeys) + 3};
    DecodeData data(c);
    std::vector<float> out(c.heads_q * c.head_dim_v);
    const TensorView q = data.Attention(data.q.data(), DType::kF32, c.seq_q,
                                        c.heads_q, c.head_dim, false);
    const TensorView out_view = data.Attention(
        out.data(), DType::kF32, c.seq_q, c.heads_q, c.head_dim_v, false);
    core::DecodeProblem problem;
    ASSERT_TRUE(core::ValidateDecode(q, data.Cache(data.k_cache, data.v_cache),
                                     out_view, c.options, nullptr, &problem)
                    .ok());
    const simd::DecodePlan plan = simd::PlanDecode(problem);
    const std::int64_t most = heads_major ? simd::kHeadMajorHeads : 5;
    std::vector<std::int64_t> heads_seen(c.heads_kv, 0);
    for (const simd::DecodeItem& item : plan.items) {
      EXPECT_EQ(item.head_end - item.head_begin,
                std::min(most, c.heads_kv - item.head_begin))
          << (heads_major ? "heads-major" : "flash-attn layout");
      for (std::int64_t g = item.head_begin; g < item.head_end; ++g)
        ++heads_seen[g];
    }
    // Two splits of every head, each once.
    for (std::int64_t g = 0; g < c.heads_kv; ++g) EXPECT_EQ(heads_seen[g], 2);
  }
}

// A row's arithmetic does not depend on how many heads its item holds, so
// the same cache in either layout gives bitwise the same out and lse
// (including rows of items with padding lanes).
TEST(DecodeTest, LayoutsGiveBitwiseEqualResults) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    DecodeCase c;
    c.heads_kv = 5, c.heads_q = 15, c.seq_q = 3;
    c.head_dim = 48, c.head_dim_v = 48;
    c.cache_lens = {static_cast<std::int32_t>(simd::kSplitKeys) + 70, 33};
    c.options.causal = Causal::kBottomRight;
    c.dtype = dtype;
    DecodeData flash(c);
    c.heads_major_cache = true;
    DecodeData heads_major(c);
    // The same values: copy each key's rows into the head-major order.
    for (std::int64_t b = 0; b < c.batch(); ++b) {
      for (std::int64_t j = 0; j < c.cache_lens[b]; ++j) {
        for (std::int64_t e = 0; e < c.heads_kv * c.head_dim; ++e) {
          heads_major.k_cache.Set(
              heads_major.CacheIndex(b, j, e, c.head_dim),
              flash.k_cache.Get(flash.CacheIndex(b, j, e, c.head_dim)));
          heads_major.v_cache.Set(
              heads_major.CacheIndex(b, j, e, c.head_dim_v),
              flash.v_cache.Get(flash.CacheIndex(b, j, e, c.head_dim_v)));
        }
      }
    }
    for (std::int64_t target : simd::RunnableTargets()) {
      simd::ScopedTarget scoped(target);
      const Outputs a = RunDecode(flash, false, 2);
      const Outputs b = RunDecode(heads_major, false, 2);
      EXPECT_EQ(0, std::memcmp(a.out.data(), b.out.data(),
                               a.out.size() * sizeof(float)))
          << DTypeLabel(dtype) << " [" << simd::TargetName(target) << "]";
      EXPECT_EQ(0, std::memcmp(a.lse.data(), b.lse.data(),
                               a.lse.size() * sizeof(float)))
          << DTypeLabel(dtype) << " [" << simd::TargetName(target) << "]";
    }
  }
}

TEST(DecodeTest, AppendWritesTheNewRowsIntoTheCache) {
  for (std::int64_t page : {std::int64_t{0}, std::int64_t{16}}) {
    DecodeCase c;
    c.page_size = page;
    c.seqlen_new = 3;
    c.cache_lens = {14, 0};
    c.dtype = DType::kBF16;
    DecodeData data(c);
    const Outputs fast = RunDecode(data, false);
    const std::int64_t k_row = c.heads_kv * c.head_dim;
    for (std::int64_t b = 0; b < c.batch(); ++b) {
      for (std::int64_t t = 0; t < c.seqlen_new; ++t) {
        const std::int64_t row = data.CacheRow(b, c.cache_lens[b] + t);
        for (std::int64_t e = 0; e < k_row; ++e) {
          ASSERT_EQ(fast.k.Get(row * k_row + e),
                    data.k_new.Get((b * c.seqlen_new + t) * k_row + e))
              << "page " << page << " batch " << b << " new row " << t;
        }
      }
      // The row after the appended ones is untouched (still NaN).
      const std::int64_t after =
          data.CacheRow(b, c.cache_lens[b] + c.seqlen_new);
      EXPECT_TRUE(std::isnan(fast.k.Get(after * k_row)));
    }
  }
}

TEST(DecodeTest, BitwiseIdenticalAcrossThreadCounts) {
  DecodeCase c;
  c.cache_lens = {static_cast<std::int32_t>(3 * simd::kSplitKeys) + 100, 900,
                  0};
  c.heads_q = 8, c.heads_kv = 2, c.head_dim = 64, c.head_dim_v = 64;
  c.page_size = 32;
  c.dtype = DType::kBF16;
  DecodeData data(c);
  const Outputs one = RunDecode(data, false, 1);
  for (int threads : {2, 3}) {
    const Outputs many = RunDecode(data, false, threads);
    EXPECT_EQ(0, std::memcmp(one.out.data(), many.out.data(),
                             one.out.size() * sizeof(float)))
        << threads << " threads";
    EXPECT_EQ(0, std::memcmp(one.lse.data(), many.lse.data(),
                             one.lse.size() * sizeof(float)))
        << threads << " threads";
  }
  const Outputs again = RunDecode(data, false, 2);
  EXPECT_EQ(0, std::memcmp(one.out.data(), again.out.data(),
                           one.out.size() * sizeof(float)));
}

// A valid call whose arguments each test breaks one at a time.
struct BadInputs : ::testing::Test {
  DecodeCase c = [] {
    DecodeCase dc;
    dc.page_size = 16;
    dc.seqlen_new = 1;
    return dc;
  }();
  DecodeData data{c};
  std::vector<float> out = std::vector<float>(2 * 1 * 4 * 32);
  std::vector<float> lse_buffer = std::vector<float>(2 * 4);
  TensorView q = TensorView::Bnhd(data.q.data(), DType::kF32, 2, 1, 4, 32);
  TensorView out_view = TensorView::Bnhd(out.data(), DType::kF32, 2, 1, 4, 32);
  TensorView lse =
      TensorView::Contiguous(lse_buffer.data(), DType::kF32, 3, {2, 4, 1});
  KvCache cache = data.Cache(data.k_cache, data.v_cache);
  AttentionOptions options;

  void ExpectError(StatusCode code, const std::string& fragment) {
    const Status status =
        AttentionWithKvCache(q, cache, out_view, options, &lse);
    EXPECT_EQ(status.code(), code) << status.ToString();
    EXPECT_NE(status.message().find(fragment), std::string::npos)
        << "message: " << status.message()
        << "\nexpected to contain: " << fragment;
  }
};

TEST_F(BadInputs, ValidCallSucceeds) {
  EXPECT_TRUE(AttentionWithKvCache(q, cache, out_view, options, &lse).ok());
}
TEST_F(BadInputs, QueryDType) {
  q.dtype = DType::kBool;
  ExpectError(StatusCode::kInvalidArgument, "q.dtype: expected f32, got bool");
}
TEST_F(BadInputs, CacheDTypeMismatch) {
  cache.v.dtype = DType::kBF16;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.v.dtype: expected f32 (cache.k.dtype), got bf16");
}
TEST_F(BadInputs, HeadDim) {
  cache.k.shape[3] = 16;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.k.shape[3] (head_dim): expected 32 (q.shape[3]), got 16");
}
TEST_F(BadInputs, Groups) {
  q.shape[2] = 3;
  out_view.shape[2] = 3;
  ExpectError(StatusCode::kInvalidArgument,
              "is not a multiple of cache.k.shape[2] (heads_kv)");
}
TEST_F(BadInputs, NegativeStride) {
  cache.v.strides[1] = -1;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.v.strides[1] (page_size): expected >= 0, got -1");
}
TEST_F(BadInputs, NullCache) {
  cache.k.data = nullptr;
  ExpectError(StatusCode::kInvalidArgument, "cache.k.data: expected non-null");
}
TEST_F(BadInputs, OnlyKNew) {
  cache.v_new = TensorView{};
  ExpectError(StatusCode::kInvalidArgument,
              "expected both or neither, got only k_new");
}
TEST_F(BadInputs, NewRowsShape) {
  cache.v_new.shape[1] = 2;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.v_new.shape[1] (seqlen_new): expected 1");
}
TEST_F(BadInputs, SeqlensSize) {
  cache.seqlens = cache.seqlens.first(1);
  ExpectError(StatusCode::kInvalidArgument, "cache.seqlens.size(): expected 2");
}
TEST_F(BadInputs, SeqlenBeyondCapacity) {
  const std::vector<std::int32_t> lens = {
      5, static_cast<std::int32_t>(data.max_pages * 16)};
  cache.seqlens = lens;
  ExpectError(StatusCode::kOutOfRange,
              "cache.seqlens[1] + seqlen_new: expected <= ");
}
TEST_F(BadInputs, NegativeSeqlen) {
  const std::vector<std::int32_t> lens = {-1, 4};
  cache.seqlens = lens;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.seqlens[0]: expected >= 0, got -1");
}
TEST_F(BadInputs, PageIdOutOfRange) {
  data.block_table[1 * data.max_pages + 2] =
      static_cast<std::int32_t>(data.num_pages);
  ExpectError(StatusCode::kOutOfRange,
              "cache.block_table[1][2]: expected a page id in [0, ");
}
TEST_F(BadInputs, NegativePageId) {
  data.block_table[0] = -3;
  ExpectError(StatusCode::kOutOfRange, "cache.block_table[0][0]");
}
TEST_F(BadInputs, BlockTableRows) {
  cache.block_table.rows = 3;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.block_table.rows: expected 2");
}
TEST_F(BadInputs, Output) {
  out_view.shape[3] = 8;
  ExpectError(StatusCode::kInvalidArgument,
              "out.shape[3] (head_dim_v): expected 32");
}
TEST_F(BadInputs, Lse) {
  lse.shape[1] = 2;
  ExpectError(StatusCode::kInvalidArgument,
              "lse.shape[1] (heads_q): expected 4");
}
TEST_F(BadInputs, MaskUnsupported) {
  options.mask = lse;
  ExpectError(StatusCode::kUnsupported, "options.mask");
}
TEST_F(BadInputs, DropoutUnsupported) {
  options.dropout_p = 0.1f;
  ExpectError(StatusCode::kUnsupported, "options.dropout_p");
}
TEST_F(BadInputs, VarlenUnsupported) {
  const std::vector<std::int32_t> cu = {0, 1};
  options.cu_seqlens_q = cu;
  ExpectError(StatusCode::kUnsupported, "cu_seqlens");
}
TEST_F(BadInputs, Alibi) {
  const std::vector<float> slopes = {1.0f, 2.0f};
  options.alibi_slopes = slopes;
  ExpectError(StatusCode::kInvalidArgument,
              "options.alibi_slopes.size(): expected 4 (heads_q)");
}

// Merge: the states over keys [0, m) and [m, n) merge into the state over
// [0, n); an empty side passes the other through exactly.
struct MergeData {
  std::int64_t heads = 4, dim = 32;
  DecodeCase c;
  DecodeData data;
  MergeData() : c(MakeCase()), data(c) {}
  static DecodeCase MakeCase() {
    DecodeCase dc;
    dc.cache_lens = {300, 70};
    dc.seq_q = 2;
    return dc;
  }
  // out/lse of q over keys [from, from + lens[b]) of each sequence.
  Outputs Attend(std::int64_t from, std::vector<std::int32_t> lens) {
    DecodeCase part = c;
    part.cache_lens = lens;
    Outputs result;
    result.out.assign(2 * 2 * 4 * 32, kNaN);
    result.lse.assign(2 * 4 * 2, kNaN);
    const TensorView q =
        TensorView::Bnhd(data.q.data(), DType::kF32, 2, 2, 4, 32);
    const TensorView out =
        TensorView::Bnhd(result.out.data(), DType::kF32, 2, 2, 4, 32);
    const TensorView lse =
        TensorView::Contiguous(result.lse.data(), DType::kF32, 3, {2, 4, 2});
    KvCache cache = data.Cache(data.k_cache, data.v_cache);
    cache.seqlens = lens;
    cache.k.data =
        static_cast<float*>(cache.k.data) + from * cache.k.strides[1];
    cache.v.data =
        static_cast<float*>(cache.v.data) + from * cache.v.strides[1];
    cache.k.shape[1] -= from;
    cache.v.shape[1] -= from;
    const Status status = AttentionWithKvCache(q, cache, out, {}, &lse);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return result;
  }
};

TensorView OutView(std::vector<float>& v) {
  return TensorView::Bnhd(v.data(), DType::kF32, 2, 2, 4, 32);
}
TensorView LseView(std::vector<float>& v) {
  return TensorView::Contiguous(v.data(), DType::kF32, 3, {2, 4, 2});
}

TEST(MergeTest, HalvesOfASplitMergeIntoTheWhole) {
  MergeData m;
  Outputs whole = m.Attend(0, {300, 70});
  Outputs a = m.Attend(0, {120, 70});
  Outputs b = m.Attend(120, {180, 0});  // sequence 1: B is empty
  std::vector<float> out(whole.out.size()), lse(whole.lse.size());
  const TensorView lse_view = LseView(lse);
  ASSERT_TRUE(MergeAttentionStates(OutView(a.out), LseView(a.lse),
                                   OutView(b.out), LseView(b.lse), OutView(out),
                                   &lse_view)
                  .ok());
  Outputs merged{out, lse, {}, {}};
  ExpectClose(merged, whole, "merged halves");
  // Sequence 1's B side is empty: the result is A's, bit for bit.
  const std::size_t half = out.size() / 2;
  EXPECT_EQ(0, std::memcmp(out.data() + half, a.out.data() + half,
                           half * sizeof(float)));
  EXPECT_EQ(
      0, std::memcmp(lse.data() + lse.size() / 2, a.lse.data() + lse.size() / 2,
                     lse.size() / 2 * sizeof(float)));
}

TEST(MergeTest, EmptySidesNeverMakeNaN) {
  std::vector<float> out_a(2 * 2 * 4 * 32), out_b(out_a.size(), kNaN),
      out(out_a.size(), 5.0f);
  std::vector<float> lse_a(16), lse_b(16, kNegInf), lse(16);
  for (std::size_t e = 0; e < out_a.size(); ++e)
    out_a[e] = 0.01f * static_cast<float>(e);
  for (std::size_t e = 0; e < lse_a.size(); ++e)
    lse_a[e] = 0.5f * static_cast<float>(e) - 3.0f;
  lse_a[3] = kNegInf;  // both sides empty for (batch 0, head 1, row 1)
  std::fill(out_a.begin() + 1 * 4 * 32 + 1 * 32,
            out_a.begin() + 1 * 4 * 32 + 2 * 32, kNaN);
  const TensorView lse_view = LseView(lse);
  ASSERT_TRUE(MergeAttentionStates(OutView(out_a), LseView(lse_a),
                                   OutView(out_b), LseView(lse_b), OutView(out),
                                   &lse_view)
                  .ok());
  for (std::size_t e = 0; e < lse.size(); ++e) EXPECT_EQ(lse[e], lse_a[e]) << e;
  for (std::int64_t i = 0; i < 2; ++i) {
    for (std::int64_t h = 0; h < 4; ++h) {
      for (std::int64_t c = 0; c < 32; ++c) {
        const std::size_t at = (i * 4 + h) * 32 + c;
        const bool both_empty = i == 1 && h == 1;
        EXPECT_EQ(out[at], both_empty ? 0.0f : out_a[at])
            << i << " " << h << " " << c;
      }
    }
  }
  // Swapped sides, merged in place into out_b.
  ASSERT_TRUE(MergeAttentionStates(OutView(out_b), LseView(lse_b),
                                   OutView(out_a), LseView(lse_a),
                                   OutView(out_b), nullptr)
                  .ok());
  EXPECT_EQ(0,
            std::memcmp(out_b.data(), out.data(), out.size() * sizeof(float)));
}

TEST(MergeTest, BadShapes) {
  std::vector<float> o(2 * 2 * 4 * 32), l(16);
  TensorView out_b = OutView(o);
  out_b.shape[3] = 16;
  const Status status = MergeAttentionStates(OutView(o), LseView(l), out_b,
                                             LseView(l), OutView(o), nullptr);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("out_b.shape[3] (head_dim): expected 32"),
            std::string::npos)
      << status.message();
}

}  // namespace
}  // namespace salience
