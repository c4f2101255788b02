// Argument validation for the backward entry points. q, k, v, out and the
// options go through ValidateForward (the forward's own checks, so the
// backward accepts exactly the calls the forward did); this file adds the
// tensors only the backward has:
//
//   d_out       [batch, seq_q, heads_q, head_dim_v]  read, like out
//   lse         [batch, heads_q, seq_q]  fp32, read (any strides, 0 too)
//   dq, dk, dv  shaped like q, k, v; written whole
//
// d_out and the gradients may each be f32, bf16 or f16 (the kernel computes
// in fp32 whatever they are).
//
// Each message names the argument and the expected versus actual value, as
// the forward's do.
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>

#include "core/validate.h"

namespace salience::core {
namespace {

constexpr StatusCode kInvalid = StatusCode::kInvalidArgument;

template <typename... Parts>
Status Error(StatusCode code, const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  return Status(code, message.str());
}

// A backward tensor: its name, where each expected axis size comes from
// ("q.shape[2]"), and whether the kernel writes it.
struct GradSpec {
  const char* name;
  std::array<const char*, TensorView::kMaxRank> sources;
  bool written;
};

constexpr GradSpec kDOut{
    "d_out",
    {"out.shape[0]", "out.shape[1]", "out.shape[2]", "out.shape[3]"},
    false};
constexpr GradSpec kLse{
    "lse", {"q.shape[0]", "q.shape[2]", "q.shape[1]", ""}, false};
constexpr GradSpec kDq{
    "dq", {"q.shape[0]", "q.shape[1]", "q.shape[2]", "q.shape[3]"}, true};
constexpr GradSpec kDk{
    "dk", {"k.shape[0]", "k.shape[1]", "k.shape[2]", "k.shape[3]"}, true};
constexpr GradSpec kDv{
    "dv", {"v.shape[0]", "v.shape[1]", "v.shape[2]", "v.shape[3]"}, true};

// The first failure among checks that are safe to run in any order.
Status FirstError(std::initializer_list<Status> statuses) {
  for (const Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

// lse is fp32; the other tensors f32, bf16 or f16.
Status CheckDType(const GradSpec& spec, DType dtype) {
  const bool is_lse = &spec == &kLse;
  if (dtype == DType::kF32 || (!is_lse && (dtype == DType::kBF16 || dtype == DType::kF16))) {
    return Status::Ok();
  }
  return Error(kInvalid, spec.name, ".dtype: expected ", is_lse ? "f32" : "f32, bf16 or f16",
               ", got ", DTypeName(dtype));
}

// Rank, dtype, shape equal to `expected` (axes named by index), strides
// >= 0 (non-zero on axes of size > 1 when written), the largest offset in
// int64, and data present unless empty.
Status CheckLike(const GradSpec& spec, const TensorView& t,
                 const TensorView& expected) {
  if (t.rank != expected.rank) {
    return Error(kInvalid, spec.name, ".rank: expected ", expected.rank,
                 ", got ", t.rank);
  }
  if (Status s = CheckDType(spec, t.dtype); !s.ok()) return s;
  bool empty = false;
  std::int64_t last_offset = 0;
  for (int axis = 0; axis < t.rank; ++axis) {
    if (t.shape[axis] != expected.shape[axis]) {
      return Error(kInvalid, spec.name, ".shape[", axis, "]: expected ",
                   expected.shape[axis], " (", spec.sources[axis], "), got ",
                   t.shape[axis]);
    }
    if (t.strides[axis] < 0) {
      return Error(kInvalid, spec.name, ".strides[", axis,
                   "]: expected >= 0, got ", t.strides[axis]);
    }
    if (spec.written && t.shape[axis] > 1 && t.strides[axis] == 0) {
      return Error(kInvalid, spec.name, ".strides[", axis,
                   "]: expected non-zero for an output axis of size ",
                   t.shape[axis], ", got 0");
    }
    empty |= t.shape[axis] == 0;
    std::int64_t step = 0;
    if (__builtin_mul_overflow(std::max<std::int64_t>(t.shape[axis] - 1, 0),
                               t.strides[axis], &step) ||
        __builtin_add_overflow(last_offset, step, &last_offset) ||
        last_offset >
            INT64_MAX / static_cast<std::int64_t>(sizeof(float)) - 1) {
      return Error(StatusCode::kOutOfRange, spec.name,
                   ": largest element offset overflows int64");
    }
  }
  if (t.data == nullptr && !empty) {
    return Error(kInvalid, spec.name, ".data: expected non-null, got null");
  }
  return Status::Ok();
}

}  // namespace

Status ValidateBackward(const TensorView& q, const TensorView& k,
                        const TensorView& v, const TensorView& out,
                        const TensorView& d_out, const TensorView& lse,
                        const TensorView& dq, const TensorView& dk,
                        const TensorView& dv, const AttentionOptions& options,
                        Problem* problem) {
  Problem p;
  if (Status s = ValidateForward(q, k, v, out, options, nullptr, &p); !s.ok()) {
    return s;
  }
  // lse's expected shape, from q's axes (with varlen: batch 1, packed rows).
  TensorView lse_like;
  lse_like.rank = 3;
  lse_like.shape = {q.shape[0], q.shape[2], q.shape[1], 0};
  if (Status s =
          FirstError({CheckLike(kDOut, d_out, out),
                      CheckLike(kLse, lse, lse_like), CheckLike(kDq, dq, q),
                      CheckLike(kDk, dk, k), CheckLike(kDv, dv, v)});
      !s.ok()) {
    return s;
  }
  p.lse = &lse;
  p.d_out = d_out;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  *problem = p;
  return Status::Ok();
}

}  // namespace salience::core
