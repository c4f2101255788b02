// Checks of tensor arguments shared by every validator (forward, backward,
// decode): each returns a Status whose message names the argument, the
// axis and the expected versus actual value.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <string>

#include "salience/status.h"
#include "salience/tensor.h"

namespace salience::core::checks {

inline constexpr StatusCode kInvalid = StatusCode::kInvalidArgument;
inline constexpr StatusCode kOutOfRange = StatusCode::kOutOfRange;

// Builds a Status from streamable parts: Error(code, "q.rank: expected ", 4).
template <typename... Parts>
Status Error(StatusCode code, const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  return Status(code, message.str());
}

// What a tensor argument is called in messages and how many axes it has.
struct TensorSpec {
  const char* name;
  int rank;
  std::array<const char*, TensorView::kMaxRank> axes;
};

// Which dtypes an argument accepts: q, k, v and out are f32, bf16 or f16
// (the kernels accumulate in fp32 whatever they read); lse is f32; a mask is
// bool or f32.
enum class DTypes : std::uint8_t { kFloat, kF32, kBoolOrF32 };

// The first failure among checks evaluated up front, in order; ok if none.
// Only for checks that are safe to run even when an earlier one failed.
Status FirstError(std::initializer_list<Status> statuses);

// "[2, 3, 4, 8]" for the first `rank` entries.
std::string Dims(const std::array<std::int64_t, TensorView::kMaxRank>& dims,
                 int rank);

// "k.shape[3] (head_dim)"
std::string AxisName(const TensorSpec& spec, int axis);

// `name`.dtype among `accepted`; bf16 and f16 where only f32 is accepted
// are kUnsupported (valid in principle, not implemented), others invalid.
Status CheckDType(const char* name, DType dtype, DTypes accepted);

// The element count and the largest element offset, sum((size-1) * stride),
// must fit in int64 (in bytes too) so kernels can index without overflow.
// Empty axes count as size 1 here: every partial product of sizes that a
// kernel may form (batch * heads, ...) then fits as well.
Status CheckExtent(const TensorSpec& spec, const TensorView& t);

bool IsEmpty(const TensorSpec& spec, const TensorView& t);

// Non-negative shape and strides, no overflow, data present if non-empty.
// Call after the rank and dtype checks.
Status CheckLayout(const TensorSpec& spec, const TensorView& t);

Status CheckRank(const TensorSpec& spec, const TensorView& t);

// Threads write disjoint elements only if no axis of size > 1 collapses to
// one address; a zero-stride output axis would make them race. An empty
// output is never written, so its strides do not matter.
Status CheckWritable(const TensorSpec& spec, const TensorView& t);

// "k.shape[3] (head_dim): expected 64 (q.shape[3]), got 32"
Status ExpectAxis(const TensorSpec& spec, const TensorView& t, int axis,
                  std::int64_t expected, const char* source);

// "q.shape[3] (head_dim): expected 1..512, got 0"; no `high`: ">= low".
Status ExpectRange(const TensorSpec& spec, const TensorView& t, int axis,
                   std::int64_t low, std::optional<std::int64_t> high = {});

}  // namespace salience::core::checks
