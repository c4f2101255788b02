// Per-thread workspace kept between calls, shared by the kernels.
#pragma once

#include <cstddef>

#include "hwy/aligned_allocator.h"

namespace salience::simd {

// The calling thread's buffer of at least `floats` floats, kept between
// calls: a kernel called again at the same shape touches no fresh pages (at
// N = 1024 the page faults of a new 8 MiB workspace cost a tenth of a
// forward). It grows to the largest request; null when allocation fails.
// `Tag` separates the buffers of kernels that may be live at once.
template <typename Tag>
float* CachedWorkspace(std::size_t floats) {
  static thread_local hwy::AlignedFreeUniquePtr<float[]> buffer;
  static thread_local std::size_t capacity = 0;
  if (floats > capacity) {
    buffer.reset();
    capacity = 0;
    buffer = hwy::AllocateAligned<float>(floats);
    if (!buffer) return nullptr;
    capacity = floats;
  }
  return buffer.get();
}

}  // namespace salience::simd
