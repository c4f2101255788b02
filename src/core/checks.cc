#include "core/checks.h"

#include <algorithm>

namespace salience::core::checks {

Status FirstError(std::initializer_list<Status> statuses) {
  for (const Status& s : statuses) {
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

std::string Dims(const std::array<std::int64_t, TensorView::kMaxRank>& dims,
                 int rank) {
  std::string text = "[";
  for (int axis = 0; axis < rank; ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(dims[axis]);
  }
  return text + "]";
}

std::string AxisName(const TensorSpec& spec, int axis) {
  return std::string(spec.name) + ".shape[" + std::to_string(axis) + "] (" +
         spec.axes[axis] + ")";
}

Status CheckDType(const char* name, DType dtype, DTypes accepted) {
  const bool low_precision = dtype == DType::kBF16 || dtype == DType::kF16;
  if (dtype == DType::kF32 || (accepted == DTypes::kFloat && low_precision) ||
      (accepted == DTypes::kBoolOrF32 && dtype == DType::kBool)) {
    return Status::Ok();
  }
  const char* expected = accepted == DTypes::kFloat      ? "f32, bf16 or f16"
                         : accepted == DTypes::kBoolOrF32 ? "bool or f32"
                                                          : "f32";
  if (low_precision) {
    return Error(StatusCode::kUnsupported, name, ".dtype: ", DTypeName(dtype),
                 " is not supported yet (expected ", expected, ")");
  }
  return Error(kInvalid, name, ".dtype: expected ", expected, ", got ",
               DTypeName(dtype));
}

Status CheckExtent(const TensorSpec& spec, const TensorView& t) {
  std::int64_t count = 1, last_offset = 0, step = 0, bytes = 0;
  bool count_overflows = false, offset_overflows = false;
  for (int axis = 0; axis < spec.rank; ++axis) {
    const std::int64_t size = std::max<std::int64_t>(t.shape[axis], 1);
    const std::int64_t stride = t.strides[axis];
    count_overflows |= __builtin_mul_overflow(count, size, &count);
    offset_overflows |= __builtin_mul_overflow(size - 1, stride, &step);
    offset_overflows |= __builtin_add_overflow(last_offset, step, &last_offset);
  }
  offset_overflows |= __builtin_add_overflow(last_offset, 1, &bytes);
  offset_overflows |= __builtin_mul_overflow(
      bytes, static_cast<std::int64_t>(DTypeSize(t.dtype)), &bytes);
  if (!count_overflows && !offset_overflows) return Status::Ok();
  return Error(kOutOfRange, spec.name,
               count_overflows ? ": element count" : ": largest element offset",
               " overflows int64 (shape ", Dims(t.shape, spec.rank),
               ", strides ", Dims(t.strides, spec.rank), ")");
}

bool IsEmpty(const TensorSpec& spec, const TensorView& t) {
  for (int axis = 0; axis < spec.rank; ++axis) {
    if (t.shape[axis] == 0) return true;
  }
  return false;
}

Status CheckLayout(const TensorSpec& spec, const TensorView& t) {
  for (int axis = 0; axis < spec.rank; ++axis) {
    if (t.shape[axis] < 0) {
      return Error(kInvalid, AxisName(spec, axis), ": expected >= 0, got ",
                   t.shape[axis]);
    }
    if (t.strides[axis] < 0) {
      return Error(kInvalid, spec.name, ".strides[", axis, "] (",
                   spec.axes[axis], "): expected >= 0, got ", t.strides[axis]);
    }
  }
  if (Status s = CheckExtent(spec, t); !s.ok()) return s;
  if (t.data != nullptr || IsEmpty(spec, t)) return Status::Ok();
  return Error(kInvalid, spec.name, ".data: expected non-null for shape ",
               Dims(t.shape, spec.rank), ", got null");
}

Status CheckRank(const TensorSpec& spec, const TensorView& t) {
  if (t.rank == spec.rank) return Status::Ok();
  return Error(kInvalid, spec.name, ".rank: expected ", spec.rank, ", got ",
               t.rank);
}

Status CheckWritable(const TensorSpec& spec, const TensorView& t) {
  if (IsEmpty(spec, t)) return Status::Ok();
  for (int axis = 0; axis < spec.rank; ++axis) {
    if (t.shape[axis] > 1 && t.strides[axis] == 0) {
      return Error(kInvalid, spec.name, ".strides[", axis, "] (",
                   spec.axes[axis], "): expected non-zero for an output axis ",
                   "of size ", t.shape[axis], ", got 0");
    }
  }
  return Status::Ok();
}

Status ExpectAxis(const TensorSpec& spec, const TensorView& t, int axis,
                  std::int64_t expected, const char* source) {
  if (t.shape[axis] == expected) return Status::Ok();
  return Error(kInvalid, AxisName(spec, axis), ": expected ", expected, " (",
               source, "), got ", t.shape[axis]);
}

Status ExpectRange(const TensorSpec& spec, const TensorView& t, int axis,
                   std::int64_t low, std::optional<std::int64_t> high) {
  const std::int64_t size = t.shape[axis];
  if (size >= low && size <= high.value_or(size)) return Status::Ok();
  const std::string range =
      high ? std::to_string(low) + ".." + std::to_string(*high)
           : ">= " + std::to_string(low);
  return Error(kInvalid, AxisName(spec, axis), ": expected ", range, ", got ",
               size);
}

}  // namespace salience::core::checks
