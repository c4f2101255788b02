// The fused forward kernel, dispatched at run time to the best SIMD target
// the CPU supports (Highway's HWY_DYNAMIC_DISPATCH).
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.h"

namespace salience::simd {

Status Forward(const core::Problem& p);

// Targets compiled into this build that the CPU can run, best first
// (Highway target bits, e.g. HWY_AVX3).
std::vector<std::int64_t> RunnableTargets();
const char* TargetName(std::int64_t target);
// The target Forward dispatches to now.
std::int64_t CurrentTarget();

// Restricts dispatch to one target while alive (tests, `salience check`).
class ScopedTarget {
 public:
  explicit ScopedTarget(std::int64_t target);
  ~ScopedTarget();
  ScopedTarget(const ScopedTarget&) = delete;
  ScopedTarget& operator=(const ScopedTarget&) = delete;
};

}  // namespace salience::simd
