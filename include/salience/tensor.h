// salience: a strided, non-owning view of a tensor of up to four axes.
//
// Attention tensors are viewed with the logical shape
//     [batch, seq, heads, head_dim]
// whatever their memory order: strides (in elements, not bytes) say where each
// axis lives, so [B,N,H,D] memory (flash-attn) and [B,H,N,D] memory (torch)
// are both views without a copy. A stride of 0 broadcasts that axis (masks use
// this to share one [seq_q, seq_k] matrix across batch and heads).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace salience {

enum class DType : std::uint8_t {
  kF32,   // IEEE binary32
  kBF16,  // bfloat16 (stored as uint16)
  kF16,   // IEEE binary16 (stored as uint16)
  kBool,  // one byte per element, 0 = false, anything else = true
};

const char* DTypeName(DType dtype);
std::size_t DTypeSize(DType dtype);

struct TensorView {
  static constexpr int kMaxRank = 4;

  void* data = nullptr;
  DType dtype = DType::kF32;
  int rank = 0;
  std::array<std::int64_t, kMaxRank> shape{};
  std::array<std::int64_t, kMaxRank> strides{};  // in elements

  // Contiguous row-major view of the given shape (last axis fastest).
  static TensorView Contiguous(void* data, DType dtype, int rank,
                               std::array<std::int64_t, kMaxRank> shape);

  // Attention tensor [batch, seq, heads, head_dim] stored as [B,N,H,D]
  // (flash-attn's layout) ...
  static TensorView Bnhd(void* data, DType dtype, std::int64_t batch,
                         std::int64_t seq, std::int64_t heads,
                         std::int64_t head_dim);
  // ... or stored as [B,H,N,D] (torch's layout); the logical axes stay
  // [batch, seq, heads, head_dim].
  static TensorView Bhnd(void* data, DType dtype, std::int64_t batch,
                         std::int64_t seq, std::int64_t heads,
                         std::int64_t head_dim);

  // Element offset of an index (no bounds checks; rank-many indices used).
  std::int64_t Offset(std::int64_t i0, std::int64_t i1 = 0,
                      std::int64_t i2 = 0, std::int64_t i3 = 0) const {
    return i0 * strides[0] + i1 * strides[1] + i2 * strides[2] +
           i3 * strides[3];
  }
};

}  // namespace salience
