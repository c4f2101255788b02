// Argument validation of the backward's own tensors (d_out, lse, dq, dk,
// dv): codes and messages naming the argument, and the Problem they fill.
#include <gtest/gtest.h>

#include <cstdint>

#include "core/validate.h"
#include "validate_fixture.h"

namespace salience::core {
namespace {

using namespace validate_testing;  // the fixture (validate_fixture.h)

class ValidateBackwardTest : public ValidateTest {
 protected:
  ValidateBackwardTest() { MakeGradients(); }

  // d_out like out, dq/dk/dv like q/k/v, over fresh buffers.
  void MakeGradients() {
    const auto like = [this](const TensorView& t) {
      return Attention(t.shape[0], t.shape[1], t.shape[2], t.shape[3],
                       Layout::kBnhd);
    };
    d_out_ = like(out_);
    dq_ = like(q_);
    dk_ = like(k_);
    dv_ = like(v_);
  }

  Status ValidateGrad() {
    return ValidateBackward(q_, k_, v_, out_, d_out_, lse_, dq_, dk_, dv_,
                            options_, &problem_);
  }

  TensorView d_out_, dq_, dk_, dv_;
};

TEST_F(ValidateBackwardTest, AcceptsAndFillsProblem) {
  ASSERT_TRUE(ValidateGrad().ok()) << ValidateGrad().ToString();
  EXPECT_EQ(problem_.lse, &lse_);
  EXPECT_EQ(problem_.d_out.data, d_out_.data);
  EXPECT_EQ(problem_.dq.data, dq_.data);
  EXPECT_EQ(problem_.dk.strides, dk_.strides);
  EXPECT_EQ(problem_.dv.shape, dv_.shape);
  EXPECT_EQ(problem_.group_size(), 2);
  EXPECT_EQ(problem_.head_dim_v, 6);
}

TEST_F(ValidateBackwardTest, AcceptsBroadcastLseAndDOut) {
  lse_.strides = {0, 0, 0, 0};  // read only: any strides
  d_out_.strides[2] = 0;
  ASSERT_TRUE(ValidateGrad().ok()) << ValidateGrad().ToString();
}

TEST_F(ValidateBackwardTest, AcceptsVarlenLseOverPackedRows) {
  MakeVarlen();
  MakeGradients();
  ASSERT_TRUE(ValidateGrad().ok()) << ValidateGrad().ToString();
  EXPECT_TRUE(problem_.varlen);
  EXPECT_EQ(problem_.num_seqs, 3);
}

TEST_F(ValidateBackwardTest, ReportsForwardErrorsFirst) {
  k_.shape[3] = 7;
  EXPECT_TRUE(
      IsError(ValidateGrad(), StatusCode::kInvalidArgument,
              {"k.shape[3] (head_dim): expected 8 (q.shape[3]), got 7"}));
  k_.shape[3] = 8;
  options_.dropout_p = 1.5f;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"options.dropout_p", "got 1.5"}));
}

TEST_F(ValidateBackwardTest, RejectsDOutShape) {
  d_out_.shape[3] = 5;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"d_out.shape[3] (head_dim_v): expected 6 (out.shape[3]), got 5"}));
  d_out_.shape[3] = 6;
  d_out_.rank = 3;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"d_out.rank: expected 4, got 3"}));
}

TEST_F(ValidateBackwardTest, RejectsLse) {
  lse_.shape[1] = 2;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"lse.shape[1] (heads_q): expected 4 (q.shape[2]), got 2"}));
  lse_.shape[1] = 4;
  lse_.data = nullptr;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"lse.data: expected non-null for shape [2, 4, 3], got null"}));
  lse_.data = dq_.data;
  lse_.rank = 4;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"lse.rank: expected 3, got 4"}));
  lse_.rank = 3;
  lse_.dtype = DType::kBool;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"lse.dtype: expected f32", "got bool"}));
}

TEST_F(ValidateBackwardTest, GradientDTypes) {
  dq_.dtype = DType::kBF16;
  dv_.dtype = DType::kF16;
  EXPECT_TRUE(ValidateGrad().ok());
  dq_.dtype = DType::kF32;
  dv_.dtype = DType::kBool;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"dv.dtype: expected f32, bf16 or f16", "got bool"}));
  dv_.dtype = DType::kF32;
  lse_.dtype = DType::kBF16;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kUnsupported,
                      {"lse.dtype: bf16 is not supported yet (expected f32)"}));
}

TEST_F(ValidateBackwardTest, RejectsGradientShapes) {
  dk_.shape[1] = 4;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"dk.shape[1] (seq_k): expected 5 (k.shape[1]), got 4"}));
  dk_.shape[1] = 5;
  dv_.shape[3] = 8;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"dv.shape[3] (head_dim_v): expected 6 (v.shape[3]), got 8"}));
  dv_.shape[3] = 6;
  dq_.shape[2] = 2;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"dq.shape[2] (heads_q): expected 4 (q.shape[2]), got 2"}));
}

TEST_F(ValidateBackwardTest, RejectsGradientLayouts) {
  dq_.data = nullptr;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"dq.data: expected non-null for shape [2, 3, 4, 8], got null"}));
  dq_.data = dk_.data;
  dk_.strides[1] = 0;  // k's seq axis has 5 rows: they would collide
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"dk.strides[1] (seq_k): expected non-zero for an output "
                       "axis of size 5, got 0"}));
  MakeGradients();
  dv_.strides[3] = -1;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kInvalidArgument,
                      {"dv.strides[3] (head_dim_v): expected >= 0, got -1"}));
  MakeGradients();
  dv_.strides[0] = kInt64Max / 2;
  EXPECT_TRUE(IsError(ValidateGrad(), StatusCode::kOutOfRange,
                      {"dv: largest element offset overflows int64"}));
}

TEST_F(ValidateBackwardTest, LeavesProblemUntouchedOnError) {
  problem_.num_seqs = 42;
  dq_.dtype = DType::kBool;
  EXPECT_FALSE(ValidateGrad().ok());
  EXPECT_EQ(problem_.num_seqs, 42);
  EXPECT_EQ(problem_.dq.data, nullptr);
}

}  // namespace
}  // namespace salience::core
