// The fixture of the validation tests: small real buffers for one call's
// tensors (every data pointer valid, though no kernel runs) and IsError, an
// assertion on a Status's code and message fragments.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <list>
#include <string>
#include <vector>

#include "core/validate.h"

namespace salience::core::validate_testing {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Succeeds when `status` has `code` and its message holds every fragment.
inline testing::AssertionResult IsError(const Status& status, StatusCode code,
                                 std::initializer_list<std::string> fragments) {
  if (status.code() != code) {
    return testing::AssertionFailure()
           << "expected code " << StatusCodeName(code) << ", got \""
           << status.ToString() << "\"";
  }
  for (const std::string& fragment : fragments) {
    if (status.message().find(fragment) == std::string::npos) {
      return testing::AssertionFailure() << "message \"" << status.message()
                                         << "\" lacks \"" << fragment << "\"";
    }
  }
  return testing::AssertionSuccess();
}

enum class Layout { kBnhd, kBhnd };

// Owns the buffers of one call's tensors. The default problem has batch 2,
// seq_q 3, seq_k 5, heads_q 4, heads_kv 2 (groups of 2), head_dim 8 and
// head_dim_v 6, all distinct so a message's numbers say which axis it means.
class ValidateTest : public testing::Test {
 protected:
  ValidateTest() { Reshape(2, 3, 5, 4, 2, 8, 6); }

  // Rebuilds q, k, v, out and lse over fresh buffers for these sizes.
  void Reshape(std::int64_t batch, std::int64_t seq_q, std::int64_t seq_k,
               std::int64_t heads_q, std::int64_t heads_kv,
               std::int64_t head_dim, std::int64_t head_dim_v,
               Layout layout = Layout::kBnhd) {
    q_ = Attention(batch, seq_q, heads_q, head_dim, layout);
    k_ = Attention(batch, seq_k, heads_kv, head_dim, layout);
    v_ = Attention(batch, seq_k, heads_kv, head_dim_v, layout);
    out_ = Attention(batch, seq_q, heads_q, head_dim_v, layout);
    lse_ = Contiguous(DType::kF32, 3, {batch, heads_q, seq_q, 0});
  }

  // The packed varlen problem: 3 sequences of q lengths 3, 0, 4 (7 rows)
  // and k lengths 4, 5, 0 (9 rows), batch 1.
  void MakeVarlen() {
    Reshape(1, 7, 9, 4, 2, 8, 6);
    options_.cu_seqlens_q = cu_q_;
    options_.cu_seqlens_k = cu_k_;
  }

  TensorView Attention(std::int64_t batch, std::int64_t seq, std::int64_t heads,
                       std::int64_t dim, Layout layout) {
    float* data = Buffer(batch * seq * heads * dim);
    return layout == Layout::kBnhd
               ? TensorView::Bnhd(data, DType::kF32, batch, seq, heads, dim)
               : TensorView::Bhnd(data, DType::kF32, batch, seq, heads, dim);
  }

  TensorView Contiguous(DType dtype, int rank,
                        std::array<std::int64_t, TensorView::kMaxRank> shape) {
    std::int64_t count = 1;
    for (int axis = 0; axis < rank; ++axis) count *= shape[axis];
    return TensorView::Contiguous(Buffer(count), dtype, rank, shape);
  }

  TensorView Mask(DType dtype,
                  std::array<std::int64_t, TensorView::kMaxRank> shape) {
    return Contiguous(dtype, 4, shape);
  }

  Status Validate(const TensorView* lse = nullptr) {
    return ValidateForward(q_, k_, v_, out_, options_, lse, &problem_);
  }

  TensorView q_, k_, v_, out_, lse_;
  AttentionOptions options_;
  Problem problem_;
  std::vector<std::int32_t> cu_q_ = {0, 3, 3, 7}, cu_k_ = {0, 4, 9, 9};

 private:
  // A zeroed buffer of at least one float (so data is never null) that
  // lives as long as the test; list nodes never move.
  float* Buffer(std::int64_t count) {
    buffers_.emplace_back(std::max<std::int64_t>(count, 1));
    return buffers_.back().data();
  }

  std::list<std::vector<float>> buffers_;
};

}  // namespace salience::core::validate_testing
