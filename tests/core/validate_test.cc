// Argument validation: every bad input gets the right StatusCode and a
// message naming the argument and the numbers; good inputs resolve into the
// expected Problem. Buffers are small real vectors so every data pointer is
// valid, though no kernel runs here.
#include "core/validate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <list>
#include <string>
#include <utility>
#include <vector>

#include "validate_fixture.h"

namespace salience::core {
namespace {

using namespace validate_testing;  // the fixture (validate_fixture.h)

// ---------------------------------------------------------------------------
// Good inputs and the Problem they resolve to.

TEST_F(ValidateTest, AcceptsBnhdAndFillsProblem) {
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.q.data, q_.data);
  EXPECT_EQ(problem_.out.strides, out_.strides);
  EXPECT_EQ(problem_.lse, nullptr);
  EXPECT_EQ(problem_.num_seqs, 2);
  EXPECT_EQ(problem_.heads_q, 4);
  EXPECT_EQ(problem_.heads_kv, 2);
  EXPECT_EQ(problem_.group_size(), 2);
  EXPECT_EQ(problem_.head_dim, 8);
  EXPECT_EQ(problem_.head_dim_v, 6);
  EXPECT_EQ(problem_.max_q_len, 3);
  EXPECT_EQ(problem_.max_k_len, 5);
  EXPECT_FLOAT_EQ(problem_.scale, 1.0f / std::sqrt(8.0f));
  EXPECT_FALSE(problem_.varlen);
  EXPECT_EQ(problem_.mask.data, nullptr);
  EXPECT_EQ(problem_.alibi_batch_stride, 0);
  EXPECT_GE(problem_.num_threads, 1);
}

TEST_F(ValidateTest, AcceptsBhndLayoutWithLse) {
  Reshape(2, 3, 5, 4, 2, 8, 6, Layout::kBhnd);
  ASSERT_TRUE(Validate(&lse_).ok()) << Validate(&lse_).ToString();
  EXPECT_EQ(problem_.k.strides, k_.strides);
  EXPECT_EQ(problem_.lse, &lse_);
  EXPECT_EQ(problem_.group_size(), 2);
}

TEST_F(ValidateTest, UsesGivenScaleAndThreads) {
  options_.scale = 0.25f;
  options_.num_threads = 3;
  options_.softcap = 30.0f;
  options_.window_left = -7;  // any negative bound is unbounded
  options_.window_right = -1;
  options_.causal = Causal::kBottomRight;
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.scale, 0.25f);
  EXPECT_EQ(problem_.num_threads, 3);
  EXPECT_EQ(problem_.options.softcap, 30.0f);
  EXPECT_EQ(problem_.options.causal, Causal::kBottomRight);
}

// Windows of any size: INT64_MAX is unbounded in effect, and the key range
// is computed without overflow (UBSan checks the arithmetic).
TEST_F(ValidateTest, HugeWindowsAreUnbounded) {
  for (const Align align : {Align::kTopLeft, Align::kBottomRight}) {
    options_.window_left = kInt64Max;
    options_.window_right = kInt64Max;
    options_.window_align = align;
    ASSERT_TRUE(Validate().ok()) << Validate().ToString();
    const SeqSpan seq = problem_.Seq(1);
    for (std::int64_t i = 0; i < seq.q_len; ++i) {
      const KeyRange keys = problem_.Keys(seq, i);
      EXPECT_EQ(keys.begin, 0) << i;
      EXPECT_EQ(keys.end, seq.k_len) << i;
    }
    // A window of 1 either side still bounds the range.
    options_.window_left = options_.window_right = 1;
    ASSERT_TRUE(Validate().ok());
    const KeyRange keys = problem_.Keys(seq, 2);
    const std::int64_t anchor =
        2 + (align == Align::kBottomRight ? seq.k_len - seq.q_len : 0);
    EXPECT_EQ(keys.begin, anchor - 1);
    EXPECT_EQ(keys.end, std::min(seq.k_len, anchor + 2));
  }
}

TEST_F(ValidateTest, AcceptsEmptyBatchWithNullData) {
  Reshape(0, 3, 5, 4, 2, 8, 6);
  q_.data = k_.data = v_.data = out_.data = lse_.data = nullptr;
  ASSERT_TRUE(Validate(&lse_).ok()) << Validate(&lse_).ToString();
  EXPECT_EQ(problem_.num_seqs, 0);
  EXPECT_EQ(problem_.max_q_len, 0);
  EXPECT_EQ(problem_.max_k_len, 0);
}

TEST_F(ValidateTest, AcceptsEmptySequences) {
  Reshape(2, 3, 0, 4, 2, 8, 6);  // no keys: rows get out = 0, lse = -inf
  k_.data = v_.data = nullptr;
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.max_k_len, 0);
  Reshape(2, 0, 5, 4, 2, 8, 6);  // no queries: nothing to write
  ASSERT_TRUE(Validate(&lse_).ok()) << Validate(&lse_).ToString();
  EXPECT_EQ(problem_.max_q_len, 0);
}

TEST_F(ValidateTest, AcceptsBroadcastInputsAndSizeOneOutputStride) {
  k_.strides[0] = 0;  // both batch entries read the same keys
  v_.strides[0] = 0;
  EXPECT_TRUE(Validate().ok()) << Validate().ToString();
  Reshape(2, 1, 5, 4, 2, 8, 6);
  out_.strides[1] = 0;  // a size-1 axis cannot race
  lse_.strides[2] = 0;
  EXPECT_TRUE(Validate(&lse_).ok()) << Validate(&lse_).ToString();
}

TEST_F(ValidateTest, AcceptsPaddingAndTakesLongestLengths) {
  const std::vector<std::int32_t> lens_q = {1, 2}, lens_k = {4, 0};
  options_.seqlens_q = lens_q;
  options_.seqlens_k = lens_k;
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.num_seqs, 2);
  EXPECT_EQ(problem_.max_q_len, 2);
  EXPECT_EQ(problem_.max_k_len, 4);
  EXPECT_EQ(problem_.Seq(1).k_len, 0);
}

TEST_F(ValidateTest, AcceptsVarlen) {
  MakeVarlen();
  lse_ = Contiguous(DType::kF32, 3, {1, 4, 7, 0});
  ASSERT_TRUE(Validate(&lse_).ok()) << Validate(&lse_).ToString();
  EXPECT_TRUE(problem_.varlen);
  EXPECT_EQ(problem_.num_seqs, 3);
  EXPECT_EQ(problem_.max_q_len, 4);
  EXPECT_EQ(problem_.max_k_len, 5);
  EXPECT_EQ(problem_.Seq(2).q_begin, 3);
  EXPECT_EQ(problem_.Seq(2).q_len, 4);
}

TEST_F(ValidateTest, ZeroesStridesOfBroadcastMaskAxes) {
  options_.mask = Mask(DType::kBool, {1, 1, 3, 5});
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.mask.data, options_.mask.data);
  EXPECT_EQ(problem_.mask.strides, (std::array<std::int64_t, 4>{0, 0, 5, 1}));

  options_.mask = Mask(DType::kF32, {2, 1, 1, 5});  // key padding
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.mask.strides, (std::array<std::int64_t, 4>{5, 0, 0, 1}));

  options_.mask = Mask(DType::kF32, {2, 4, 3, 5});  // full: kept as given
  options_.mask.strides[1] = 0;                     // heads share by stride
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.mask.strides, (std::array<std::int64_t, 4>{60, 0, 5, 1}));
}

TEST_F(ValidateTest, AcceptsVarlenMaskCoveringLongestSequences) {
  MakeVarlen();
  options_.mask = Mask(DType::kBool, {3, 1, 4, 5});
  EXPECT_TRUE(Validate().ok()) << Validate().ToString();
  options_.mask = Mask(DType::kBool, {1, 4, 6, 1});  // longer is fine
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.mask.strides, (std::array<std::int64_t, 4>{0, 6, 1, 0}));
}

TEST_F(ValidateTest, ResolvesAlibiBatchStride) {
  const std::vector<float> shared = {0.5f, 0.25f, 0.125f, 0.0625f};
  options_.alibi_slopes = shared;
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.alibi_batch_stride, 0);

  const std::vector<float> per_seq(8, 0.5f);  // num_seqs 2 * heads_q 4
  options_.alibi_slopes = per_seq;
  ASSERT_TRUE(Validate().ok()) << Validate().ToString();
  EXPECT_EQ(problem_.alibi_batch_stride, 4);
}

TEST_F(ValidateTest, LeavesProblemUntouchedOnError) {
  problem_.num_seqs = 42;
  k_.shape[3] = 4;
  EXPECT_FALSE(Validate().ok());
  EXPECT_EQ(problem_.num_seqs, 42);
}

TEST(ResolveThreadsTest, UsesRequestOrAllCores) {
  EXPECT_EQ(ResolveThreads(3), 3);
  EXPECT_EQ(ResolveThreads(1), 1);
  EXPECT_GE(ResolveThreads(0), 1);
}

// ---------------------------------------------------------------------------
// q, k, v and out on their own.

TEST_F(ValidateTest, RejectsWrongRank) {
  const std::pair<std::string, TensorView*> tensors[] = {
      {"q", &q_}, {"k", &k_}, {"v", &v_}, {"out", &out_}};
  for (const auto& [name, tensor] : tensors) {
    tensor->rank = 3;
    EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                        {name + ".rank: expected 4, got 3"}));
    tensor->rank = 4;
  }
}

TEST_F(ValidateTest, RejectsNullData) {
  k_.data = nullptr;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"k.data", "[2, 5, 2, 8]", "null"}));
  Reshape(2, 3, 5, 4, 2, 8, 6);
  out_.data = nullptr;
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kInvalidArgument, {"out.data", "null"}));
}

TEST_F(ValidateTest, AcceptsBf16AndF16WithOneKeyValueDType) {
  q_.dtype = DType::kBF16;
  k_.dtype = v_.dtype = DType::kF16;
  out_.dtype = DType::kF32;
  EXPECT_TRUE(Validate().ok());
  out_.dtype = DType::kBF16;
  EXPECT_TRUE(Validate().ok());
  v_.dtype = DType::kBF16;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"v.dtype: expected f16 (k.dtype), got bf16"}));
}

TEST_F(ValidateTest, RejectsBoolAndUnknownDType) {
  out_.dtype = DType::kBool;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"out.dtype: expected f32, bf16 or f16, got bool"}));
  out_.dtype = static_cast<DType>(9);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"out.dtype: expected f32, bf16 or f16, got unknown"}));
}

TEST_F(ValidateTest, RejectsNegativeShape) {
  k_.shape[1] = -1;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"k.shape[1] (seq_k): expected >= 0, got -1"}));
}

TEST_F(ValidateTest, RejectsNegativeStride) {
  v_.strides[2] = -6;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"v.strides[2] (heads_kv): expected >= 0, got -6"}));
}

TEST_F(ValidateTest, RejectsElementCountOverflow) {
  q_.shape = {std::int64_t{1} << 31, std::int64_t{1} << 31, 4, 8};
  q_.strides = {0, 0, 0, 0};
  EXPECT_TRUE(IsError(
      Validate(), StatusCode::kOutOfRange,
      {"q: element count overflows int64", "[2147483648, 2147483648, 4, 8]"}));
}

TEST_F(ValidateTest, RejectsOffsetOverflow) {
  k_.strides[1] = kInt64Max / 2;  // 4 steps of it overflow
  EXPECT_TRUE(IsError(Validate(), StatusCode::kOutOfRange,
                      {"k: largest element offset overflows int64",
                       std::to_string(kInt64Max / 2)}));
  Reshape(2, 3, 5, 4, 2, 8, 6);
  v_.shape[1] = 2;  // the offset fits, its byte extent does not
  v_.strides[1] = kInt64Max / 3;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kOutOfRange,
                      {"v: largest element offset overflows int64"}));
}

TEST_F(ValidateTest, RejectsZeroStrideOutput) {
  out_.strides[1] = 0;
  EXPECT_TRUE(IsError(
      Validate(), StatusCode::kInvalidArgument,
      {"out.strides[1] (seq_q): expected non-zero", "size 3", "got 0"}));
}

// ---------------------------------------------------------------------------
// Shapes against each other.

TEST_F(ValidateTest, RejectsBatchMismatch) {
  k_.shape[0] = 1;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"k.shape[0] (batch): expected 2 (q.shape[0]), got 1"}));
  k_.shape[0] = 2;
  v_.shape[0] = 1;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"v.shape[0] (batch): expected 2 (q.shape[0]), got 1"}));
  v_.shape[0] = 2;
  out_.shape[0] = 1;
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kInvalidArgument,
              {"out.shape[0] (batch): expected 2 (q.shape[0]), got 1"}));
}

TEST_F(ValidateTest, RejectsKeyValueSeqMismatch) {
  v_.shape[1] = 4;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"v.shape[1] (seq_k): expected 5 (k.shape[1]), got 4"}));
}

TEST_F(ValidateTest, RejectsKeyValueHeadsMismatch) {
  v_.shape[2] = 1;
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kInvalidArgument,
              {"v.shape[2] (heads_kv): expected 2 (k.shape[2]), got 1"}));
}

TEST_F(ValidateTest, RejectsHeadsNotAMultiple) {
  Reshape(1, 3, 5, 12, 5, 8, 6);
  const Status status = Validate();
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "q.shape[2] (heads_q) = 12 is not a multiple of "
            "k.shape[2] (heads_kv) = 5");
}

TEST_F(ValidateTest, RejectsZeroHeads) {
  Reshape(2, 3, 5, 4, 0, 8, 6);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"k.shape[2] (heads_kv): expected >= 1, got 0"}));
  Reshape(2, 3, 5, 0, 2, 8, 6);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"q.shape[2] (heads_q): expected >= 1, got 0"}));
}

TEST_F(ValidateTest, RejectsHeadDimMismatch) {
  k_.shape[3] = 4;
  const Status status = Validate();
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "k.shape[3] (head_dim): expected 8 (q.shape[3]), got 4");
}

TEST_F(ValidateTest, RejectsOutHeadDimMismatch) {
  out_.shape[3] = 8;
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kInvalidArgument,
              {"out.shape[3] (head_dim_v): expected 6 (v.shape[3]), got 8"}));
}

TEST_F(ValidateTest, RejectsOutSeqOrHeadsMismatch) {
  out_.shape[1] = 2;
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kInvalidArgument,
              {"out.shape[1] (seq_q): expected 3 (q.shape[1]), got 2"}));
  out_.shape[1] = 3;
  out_.shape[2] = 2;
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kInvalidArgument,
              {"out.shape[2] (heads_q): expected 4 (q.shape[2]), got 2"}));
}

TEST_F(ValidateTest, RejectsHeadDimOutOfRange) {
  Reshape(2, 3, 5, 4, 2, 0, 6);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"q.shape[3] (head_dim): expected 1..512, got 0"}));
  Reshape(2, 3, 5, 4, 2, kMaxHeadDim + 1, 6);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"q.shape[3] (head_dim): expected 1..512, got 513"}));
  Reshape(2, 3, 5, 4, 2, 8, 600);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"v.shape[3] (head_dim_v): expected 1..512, got 600"}));
}

// ---------------------------------------------------------------------------
// lse.

TEST_F(ValidateTest, RejectsLseNullDataAndRank) {
  lse_.data = nullptr;
  EXPECT_TRUE(IsError(Validate(&lse_), StatusCode::kInvalidArgument,
                      {"lse.data", "[2, 4, 3]", "null"}));
  lse_ = Contiguous(DType::kF32, 4, {2, 4, 3, 1});
  EXPECT_TRUE(IsError(Validate(&lse_), StatusCode::kInvalidArgument,
                      {"lse.rank: expected 3, got 4"}));
}

TEST_F(ValidateTest, RejectsLseDType) {
  lse_.dtype = DType::kBF16;
  EXPECT_TRUE(IsError(Validate(&lse_), StatusCode::kUnsupported,
                      {"lse.dtype", "bf16", "not supported yet"}));
  lse_.dtype = DType::kBool;
  EXPECT_TRUE(IsError(Validate(&lse_), StatusCode::kInvalidArgument,
                      {"lse.dtype: expected f32, got bool"}));
}

TEST_F(ValidateTest, RejectsLseShape) {
  lse_ = Contiguous(DType::kF32, 3, {1, 4, 3, 0});
  EXPECT_TRUE(
      IsError(Validate(&lse_), StatusCode::kInvalidArgument,
              {"lse.shape[0] (batch): expected 2 (q.shape[0]), got 1"}));
  lse_ = Contiguous(DType::kF32, 3, {2, 2, 3, 0});
  EXPECT_TRUE(
      IsError(Validate(&lse_), StatusCode::kInvalidArgument,
              {"lse.shape[1] (heads_q): expected 4 (q.shape[2]), got 2"}));
  lse_ = Contiguous(DType::kF32, 3, {2, 4, 5, 0});
  EXPECT_TRUE(
      IsError(Validate(&lse_), StatusCode::kInvalidArgument,
              {"lse.shape[2] (seq_q): expected 3 (q.shape[1]), got 5"}));
}

TEST_F(ValidateTest, RejectsVarlenLseNotOverPackedRows) {
  MakeVarlen();
  lse_ = Contiguous(DType::kF32, 3, {3, 4, 4, 0});  // per-sequence: wrong
  EXPECT_TRUE(
      IsError(Validate(&lse_), StatusCode::kInvalidArgument,
              {"lse.shape[0] (batch): expected 1 (q.shape[0]), got 3"}));
}

TEST_F(ValidateTest, RejectsLseZeroStride) {
  lse_.strides[2] = 0;
  EXPECT_TRUE(IsError(Validate(&lse_), StatusCode::kInvalidArgument,
                      {"lse.strides[2] (seq_q): expected non-zero", "got 0"}));
}

TEST_F(ValidateTest, RejectsLseNegativeStride) {
  lse_.strides[1] = -3;
  EXPECT_TRUE(IsError(Validate(&lse_), StatusCode::kInvalidArgument,
                      {"lse.strides[1] (heads_q): expected >= 0, got -3"}));
}

// ---------------------------------------------------------------------------
// Scalar options.

TEST_F(ValidateTest, RejectsNonFiniteScale) {
  options_.scale = kNaN;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.scale: expected a finite value, got nan"}));
  options_.scale = -kInf;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.scale", "got -inf"}));
}

TEST_F(ValidateTest, RejectsBadSoftcap) {
  options_.softcap = -1.0f;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.softcap: expected finite and >= 0", "got -1"}));
  options_.softcap = kInf;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.softcap", "got inf"}));
  options_.softcap = kNaN;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.softcap", "got nan"}));
}

TEST_F(ValidateTest, RejectsNegativeThreads) {
  options_.num_threads = -2;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.num_threads: expected >= 0", "got -2"}));
}

TEST_F(ValidateTest, RejectsCausalOutOfRange) {
  options_.causal = static_cast<Causal>(3);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.causal", "(0..2), got 3"}));
}

TEST_F(ValidateTest, RejectsAlignOutOfRange) {
  options_.window_align = static_cast<Align>(2);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.window_align", "(0..1), got 2"}));
}

// ---------------------------------------------------------------------------
// Padding lengths.

TEST_F(ValidateTest, RejectsPaddingOfWrongSize) {
  const std::vector<std::int32_t> three = {1, 1, 1}, one = {1};
  options_.seqlens_q = three;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.seqlens_q.size(): expected 2", "got 3"}));
  options_.seqlens_q = {};
  options_.seqlens_k = one;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.seqlens_k.size(): expected 2", "got 1"}));
}

TEST_F(ValidateTest, RejectsNegativePaddingLength) {
  const std::vector<std::int32_t> lens = {-1, 2};
  options_.seqlens_k = lens;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.seqlens_k[0]: expected >= 0, got -1"}));
}

TEST_F(ValidateTest, RejectsPaddingLengthBeyondTensor) {
  const std::vector<std::int32_t> lens_q = {3, 4}, lens_k = {6, 5};
  options_.seqlens_q = lens_q;
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kOutOfRange,
              {"options.seqlens_q[1]: expected <= 3 (q.shape[1]), got 4"}));
  options_.seqlens_q = {};
  options_.seqlens_k = lens_k;
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kOutOfRange,
              {"options.seqlens_k[0]: expected <= 5 (k.shape[1]), got 6"}));
}

TEST_F(ValidateTest, RejectsPaddingWithVarlen) {
  MakeVarlen();
  const std::vector<std::int32_t> lens = {1};
  options_.seqlens_q = lens;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"seqlens_q", "cannot be combined", "cu_seqlens_q"}));
}

// ---------------------------------------------------------------------------
// Varlen offsets.

TEST_F(ValidateTest, RejectsCuSeqlensWithoutPartner) {
  MakeVarlen();
  options_.cu_seqlens_k = {};
  EXPECT_TRUE(IsError(
      Validate(), StatusCode::kInvalidArgument,
      {"options.cu_seqlens_k.size(): expected 4", "both or neither", "got 0"}));
  options_.cu_seqlens_k = cu_k_;
  options_.cu_seqlens_q = {};
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.cu_seqlens_k.size(): expected 0", "got 4"}));
}

TEST_F(ValidateTest, RejectsCuSeqlensOfDifferentSizes) {
  MakeVarlen();
  const std::vector<std::int32_t> cu_k = {0, 9};
  options_.cu_seqlens_k = cu_k;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.cu_seqlens_k.size(): expected 4", "got 2"}));
}

TEST_F(ValidateTest, RejectsCuSeqlensWithoutSequences) {
  MakeVarlen();
  const std::vector<std::int32_t> zero = {0};
  options_.cu_seqlens_q = zero;
  options_.cu_seqlens_k = zero;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.cu_seqlens_q.size(): expected >= 2", "got 1"}));
}

TEST_F(ValidateTest, RejectsVarlenBatchOtherThanOne) {
  options_.cu_seqlens_q = cu_q_;
  options_.cu_seqlens_k = cu_k_;  // tensors still have batch 2
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"q.shape[0] (batch): expected 1", "varlen", "got 2"}));
}

TEST_F(ValidateTest, RejectsCuSeqlensNotStartingAtZero) {
  MakeVarlen();
  cu_q_[0] = 1;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.cu_seqlens_q[0]: expected 0, got 1"}));
}

TEST_F(ValidateTest, RejectsDecreasingCuSeqlens) {
  MakeVarlen();
  cu_k_ = {0, 4, 2, 9};
  options_.cu_seqlens_k = cu_k_;
  EXPECT_TRUE(IsError(
      Validate(), StatusCode::kInvalidArgument,
      {"options.cu_seqlens_k[2]: expected >= 4", "non-decreasing", "got 2"}));
}

TEST_F(ValidateTest, RejectsCuSeqlensBeyondTensor) {
  MakeVarlen();
  cu_q_[3] = 8;
  EXPECT_TRUE(IsError(
      Validate(), StatusCode::kOutOfRange,
      {"options.cu_seqlens_q[3] (total rows): expected <= 7 (q.shape[1]), "
       "got 8"}));
  cu_q_[3] = 7;
  cu_k_[3] = 10;
  EXPECT_TRUE(IsError(
      Validate(), StatusCode::kOutOfRange,
      {"options.cu_seqlens_k[3] (total rows): expected <= 9 (k.shape[1]), "
       "got 10"}));
}

// ---------------------------------------------------------------------------
// Mask.

TEST_F(ValidateTest, RejectsMaskRank) {
  options_.mask = Contiguous(DType::kBool, 2, {3, 5, 0, 0});
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.rank: expected 4, got 2"}));
}

TEST_F(ValidateTest, RejectsMaskDType) {
  options_.mask = Mask(DType::kBF16, {1, 1, 3, 5});
  EXPECT_TRUE(
      IsError(Validate(), StatusCode::kUnsupported,
              {"mask.dtype", "bf16", "not supported yet", "bool or f32"}));
  options_.mask.dtype = static_cast<DType>(7);
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.dtype: expected bool or f32, got unknown"}));
}

TEST_F(ValidateTest, RejectsMaskShape) {
  options_.mask = Mask(DType::kBool, {3, 1, 3, 5});
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.shape[0] (batch): expected 1 or 2 (num_seqs), "
                       "got 3"}));
  options_.mask = Mask(DType::kBool, {1, 2, 3, 5});
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.shape[1] (heads_q): expected 1 or 4 "
                       "(q.shape[2]), got 2"}));
  options_.mask = Mask(DType::kBool, {1, 1, 4, 5});
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.shape[2] (seq_q): expected 1 or 3 (q.shape[1]), "
                       "got 4"}));
  options_.mask = Mask(DType::kBool, {1, 1, 3, 6});
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.shape[3] (seq_k): expected 1 or 5 (k.shape[1]), "
                       "got 6"}));
}

TEST_F(ValidateTest, RejectsVarlenMaskShorterThanLongestSequence) {
  MakeVarlen();
  options_.mask = Mask(DType::kBool, {2, 1, 4, 5});
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.shape[0] (batch): expected 1 or 3 (num_seqs), "
                       "got 2"}));
  options_.mask = Mask(DType::kBool, {3, 1, 3, 5});
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.shape[2] (seq_q): expected 1 or >= 4", "got 3"}));
  options_.mask = Mask(DType::kBool, {3, 1, 4, 2});
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.shape[3] (seq_k): expected 1 or >= 5", "got 2"}));
}

TEST_F(ValidateTest, RejectsMaskNegativeStride) {
  options_.mask = Mask(DType::kF32, {2, 4, 3, 5});
  options_.mask.strides[3] = -1;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"mask.strides[3] (seq_k): expected >= 0, got -1"}));
}

TEST_F(ValidateTest, RejectsMaskOffsetOverflow) {
  options_.mask = Mask(DType::kBool, {2, 4, 3, 5});
  options_.mask.strides[2] = kInt64Max / 2;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kOutOfRange,
                      {"mask: largest element offset overflows int64"}));
}

// ---------------------------------------------------------------------------
// ALiBi slopes.

TEST_F(ValidateTest, RejectsAlibiOfWrongSize) {
  const std::vector<float> slopes(5, 0.5f);
  options_.alibi_slopes = slopes;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.alibi_slopes.size(): expected 0, 4 (heads_q) "
                       "or 2 * 4 (num_seqs * heads_q), got 5"}));
}

TEST_F(ValidateTest, RejectsNonFiniteAlibiSlope) {
  const std::vector<float> slopes = {0.5f, 0.25f, kNaN, 0.0625f};
  options_.alibi_slopes = slopes;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.alibi_slopes[2]: expected a finite value, "
                       "got nan"}));
}

// ---------------------------------------------------------------------------
// Dropout options.

TEST_F(ValidateTest, AcceptsDropoutProbabilityBelowOne) {
  for (const float p : {0.0f, 0.1f, 0.999f}) {
    options_.dropout_p = p;
    options_.dropout_seed = 0xFFFFFFFFFFFFFFFFull;
    options_.dropout_offset = 12345;
    ASSERT_TRUE(Validate().ok()) << p << ": " << Validate().ToString();
    EXPECT_EQ(problem_.options.dropout_p, p);
    EXPECT_EQ(problem_.options.dropout_seed, 0xFFFFFFFFFFFFFFFFull);
  }
}

TEST_F(ValidateTest, RejectsDropoutOutsideZeroToOne) {
  options_.dropout_p = 1.0f;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.dropout_p: expected a probability in [0, 1), "
                       "got 1"}));
  options_.dropout_p = -0.25f;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.dropout_p", "got -0.25"}));
  options_.dropout_p = kNaN;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.dropout_p", "got nan"}));
  options_.dropout_p = kInf;
  EXPECT_TRUE(IsError(Validate(), StatusCode::kInvalidArgument,
                      {"options.dropout_p", "got inf"}));
}

}  // namespace
}  // namespace salience::core
