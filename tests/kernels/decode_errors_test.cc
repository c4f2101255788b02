// Bad arguments of the decode entry point (each names the argument and the
// expected value), and MergeAttentionStates: the halves of a split merge
// into the whole, empty sides never make NaN, bad shapes are errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "decode_fixture.h"
#include "salience/decode.h"

namespace salience {
namespace {

using namespace decode_testing;  // the fixture (decode_fixture.h)

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
  ExpectError(StatusCode::kInvalidArgument,
              "q.dtype: expected f32, bf16 or f16, got bool");
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
TEST_F(BadInputs, LeftpadSize) {
  const std::vector<std::int32_t> leftpad = {0};
  cache.leftpad = leftpad;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.leftpad.size(): expected 0 or 2 (q.shape[0], batch), "
              "got 1");
}
TEST_F(BadInputs, LeftpadPastTheCachedRows) {
  const std::vector<std::int32_t> leftpad = {0, 41};
  cache.leftpad = leftpad;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.leftpad[1]: expected 0..40 (cache.seqlens[1]), got 41");
}
TEST_F(BadInputs, NegativeLeftpad) {
  const std::vector<std::int32_t> leftpad = {-2, 0};
  cache.leftpad = leftpad;
  ExpectError(StatusCode::kInvalidArgument,
              "cache.leftpad[0]: expected 0..5 (cache.seqlens[0]), got -2");
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

// bf16 and fp16 states, each side its own dtype: the merge of the values
// widened to fp32, rounded once to out's dtype (bitwise the fp32 merge of
// the same values, rounded).
TEST(MergeTest, SixteenBitStates) {
  MergeData m;
  Outputs a = m.Attend(0, {120, 70});
  Outputs b = m.Attend(120, {180, 0});
  const std::size_t count = a.out.size();
  Elements a16, b16;
  a16.Resize(DType::kBF16, static_cast<std::int64_t>(count));
  b16.Resize(DType::kF16, static_cast<std::int64_t>(count));
  for (std::size_t e = 0; e < count; ++e) {
    a16.Set(static_cast<std::int64_t>(e), a.out[e]);
    b16.Set(static_cast<std::int64_t>(e), b.out[e]);
  }
  const std::vector<float> a_wide = Widened(a16), b_wide = Widened(b16);
  std::vector<float> a_copy = a_wide, b_copy = b_wide, merged32(count),
                     lse32(a.lse.size()), lse16(a.lse.size());
  const TensorView lse32_view = LseView(lse32), lse16_view = LseView(lse16);
  ASSERT_TRUE(MergeAttentionStates(OutView(a_copy), LseView(a.lse),
                                   OutView(b_copy), LseView(b.lse),
                                   OutView(merged32), &lse32_view)
                  .ok());
  for (DType out_dtype : {DType::kBF16, DType::kF16}) {
    Elements merged;
    merged.Resize(out_dtype, static_cast<std::int64_t>(count));
    auto view = [](Elements& e) {
      return TensorView::Bnhd(e.data(), e.dtype, 2, 2, 4, 32);
    };
    ASSERT_TRUE(MergeAttentionStates(view(a16), LseView(a.lse), view(b16),
                                     LseView(b.lse), view(merged), &lse16_view)
                    .ok());
    for (std::size_t e = 0; e < count; ++e) {
      Elements rounded;
      rounded.Resize(out_dtype, 1);
      rounded.Set(0, merged32[e]);
      ASSERT_EQ(merged.Get(static_cast<std::int64_t>(e)), rounded.Get(0))
          << DTypeLabel(out_dtype) << " element " << e;
    }
    EXPECT_EQ(0, std::memcmp(lse16.data(), lse32.data(),
                             lse32.size() * sizeof(float)));
  }
}

TEST(MergeTest, LseStaysFloat32) {
  std::vector<float> o(2 * 2 * 4 * 32), l(16);
  TensorView lse_b = LseView(l);
  lse_b.dtype = DType::kBF16;
  const Status status = MergeAttentionStates(OutView(o), LseView(l), OutView(o),
                                             lse_b, OutView(o), nullptr);
  EXPECT_EQ(status.code(), StatusCode::kUnsupported) << status.ToString();
  EXPECT_NE(status.message().find("lse_b.dtype: bf16 is not supported yet"),
            std::string::npos)
      << status.message();
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
