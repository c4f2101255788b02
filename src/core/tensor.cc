#include "salience/tensor.h"

namespace salience {

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kBool: return "bool";
  }
  return "unknown";
}

std::size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kBF16:
    case DType::kF16: return 2;
    case DType::kBool: return 1;
  }
  return 0;
}

TensorView TensorView::Contiguous(void* data, DType dtype, int rank,
                                  std::array<std::int64_t, kMaxRank> shape) {
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.rank = rank;
  t.shape = shape;
  std::int64_t stride = 1;
  for (int axis = rank - 1; axis >= 0; --axis) {
    t.strides[axis] = stride;
    stride *= shape[axis];
  }
  return t;
}

TensorView TensorView::Bnhd(void* data, DType dtype, std::int64_t batch,
                            std::int64_t seq, std::int64_t heads,
                            std::int64_t head_dim) {
  return Contiguous(data, dtype, 4, {batch, seq, heads, head_dim});
}

TensorView TensorView::Bhnd(void* data, DType dtype, std::int64_t batch,
                            std::int64_t seq, std::int64_t heads,
                            std::int64_t head_dim) {
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.rank = 4;
  t.shape = {batch, seq, heads, head_dim};
  t.strides = {heads * seq * head_dim, head_dim, seq * head_dim, 1};
  return t;
}

}  // namespace salience
