// The fused backward kernel, dispatched at run time to the best SIMD target
// the CPU supports (see forward.h for target selection in tests).
#pragma once

#include <cstdint>

#include "core/problem.h"

namespace salience::simd {

// dq, dk and dv of a validated backward Problem (d_out, dq, dk, dv and lse
// set). Writes every element of the three gradients.
Status Backward(const core::Problem& p);

// Bytes of dQ slots one phase may hold (backward_schedule.h): at N = 4096
// the slots of two heads at head_dim 128, four at 64.
inline constexpr std::int64_t kBackwardSlotBudgetBytes = std::int64_t{64} << 20;

// Lowers the slot budget while alive, so that tests reach the multi-phase
// paths (query segments) at shapes the reference can check.
class ScopedBackwardSlotBudget {
 public:
  explicit ScopedBackwardSlotBudget(std::int64_t bytes);
  ~ScopedBackwardSlotBudget();
  ScopedBackwardSlotBudget(const ScopedBackwardSlotBudget&) = delete;
  ScopedBackwardSlotBudget& operator=(const ScopedBackwardSlotBudget&) = delete;

 private:
  std::int64_t previous_;
};

// The budget in force.
std::int64_t BackwardSlotBudgetBytes();

}  // namespace salience::simd
