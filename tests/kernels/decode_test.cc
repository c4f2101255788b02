// The decode path (salience/decode.h) against its fp64 reference, under every
// SIMD target the CPU can run: contiguous and paged caches (pages shuffled,
// unused table entries invalid), fp32/bf16/fp16 caches, both cache layouts,
// every option, ragged lengths around page and split boundaries, appends,
// the plan, bitwise determinism across thread counts and layouts. Bad inputs
// and MergeAttentionStates: decode_errors_test.cc.
#include "kernels/simd/decode.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/validate_decode.h"
#include "decode_fixture.h"
#include "kernels/simd/forward.h"
#include "salience/decode.h"

namespace salience {
namespace {

using namespace decode_testing;  // the fixture (decode_fixture.h)

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

// q and out in any float dtype, each on its own and apart from the cache's:
// q is widened as the item loads it, out rounded once where a row is
// finished (an item's own rows, and the merge of a long sequence's splits),
// on contiguous and paged caches, with strided q and out.
TEST(DecodeTest, QueriesAndOutputsInEveryDtype) {
  struct Dtypes {
    DType q, out, cache;
  };
  for (const Dtypes t : {Dtypes{DType::kBF16, DType::kBF16, DType::kBF16},
                         Dtypes{DType::kF16, DType::kF16, DType::kF16},
                         Dtypes{DType::kBF16, DType::kF32, DType::kF32},
                         Dtypes{DType::kF32, DType::kF16, DType::kBF16},
                         Dtypes{DType::kF16, DType::kBF16, DType::kF32}}) {
    DecodeCase c;
    c.q_dtype = t.q, c.out_dtype = t.out, c.dtype = t.cache;
    c.heads_q = 8, c.heads_kv = 2, c.seq_q = 2;
    c.cache_lens = {0, 33, static_cast<std::int32_t>(simd::kSplitKeys) + 77};
    c.options.causal = Causal::kBottomRight;
    const std::string name = std::string("q ") + DTypeLabel(t.q) + ", out " +
                             DTypeLabel(t.out) + ", cache " +
                             DTypeLabel(t.cache);
    CheckCase(c, name);
    c.page_size = 16, c.strided_q = true;
    CheckCase(c, name + ", paged, strided q and out");
  }
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
      CheckCase(c, "heads-major " + std::string(DTypeLabel(dtype)) + " group " +
                       std::to_string(group));
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
    const TensorView out_view = data.Attention(out.data(), DType::kF32, c.seq_q,
                                               c.heads_q, c.head_dim_v, false);
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

// cache.leftpad: sequence b's keys start at cache position leftpad[b]; the
// positions before it (NaN, in pages whose table entries are invalid) are
// never read, and causal, the window and ALiBi count keys from there, as
// flash-attn's cache_leftpad does. Appends still go to seqlens[b].
TEST(DecodeTest, LeftPaddedCaches) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (std::int64_t page :
         {std::int64_t{0}, std::int64_t{16}, std::int64_t{5}}) {
      DecodeCase c;
      c.dtype = dtype, c.page_size = page;
      c.cache_lens = {40, 7, 0,
                      static_cast<std::int32_t>(simd::kSplitKeys) + 9};
      c.leftpad = {17, 7, 0, 35};
      const std::string name =
          std::string(DTypeLabel(dtype)) + " page " + std::to_string(page);
      CheckCase(c, "leftpad " + name);
      c.seqlen_new = 2, c.seq_q = 3, c.options.causal = Causal::kBottomRight;
      CheckCase(c, "leftpad append causal " + name);
      c.options.window_left = 4;
      static const std::vector<float> slopes = {0.5f, 0.25f, 0.125f, 0.0625f};
      c.options.alibi_slopes = slopes;
      CheckCase(c, "leftpad window alibi " + name);
    }
  }
}

// Left padding is the same as a cache whose rows start at the padding's
// end: bitwise, since a row's arithmetic depends only on the keys it reads.
TEST(DecodeTest, LeftPaddingEqualsAShiftedCache) {
  DecodeCase c;
  c.cache_lens = {30, 12};
  c.leftpad = {10, 3};
  c.seq_q = 2, c.options.causal = Causal::kBottomRight;
  DecodeData padded(c);
  c.cache_lens = {20, 9};
  c.leftpad.clear();
  DecodeData shifted(c);
  const std::int64_t k_row = c.heads_kv * c.head_dim;
  for (std::int64_t b = 0; b < c.batch(); ++b) {
    for (std::int64_t j = 0; j < c.cache_lens[b]; ++j) {
      for (std::int64_t e = 0; e < k_row; ++e) {
        shifted.k_cache.Set(shifted.CacheIndex(b, j, e, c.head_dim),
                            padded.k_cache.Get(padded.CacheIndex(
                                b, j + padded.Start(b), e, c.head_dim)));
        shifted.v_cache.Set(shifted.CacheIndex(b, j, e, c.head_dim_v),
                            padded.v_cache.Get(padded.CacheIndex(
                                b, j + padded.Start(b), e, c.head_dim_v)));
      }
    }
  }
  shifted.q = padded.q;
  const Outputs a = RunDecode(padded, false), b = RunDecode(shifted, false);
  EXPECT_EQ(
      0, std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)));
  EXPECT_EQ(
      0, std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)));
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

}  // namespace
}  // namespace salience
