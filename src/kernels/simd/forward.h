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

// How bf16 q, k and v are multiplied (outputs and accumulation are fp32
// either way; f16 and mixed dtypes always widen):
enum class Bf16Path : std::uint8_t {
  kAuto,        // as measured on this CPU (ChosenBf16Path)
  kDotProduct,  // vdpbf16ps (AVX512_BF16) on bf16 pairs, P rounded to bf16
  kWiden,       // widened to fp32 when packed, the fp32 micro-kernels
};

// Whether this CPU and OS can run the bf16 dot-product path.
bool CpuHasDotBf16();

// The path kAuto takes: kDotProduct when the CPU has it and a one-time
// measurement of both micro-kernels (well under a millisecond, on the first
// bf16 call) finds it at least 1.2x faster, kWiden otherwise.
Bf16Path ChosenBf16Path();

// Forces a bf16 path while alive (tests, benchmarks); kDotProduct on a CPU
// without it, or under a target other than AVX-512, widens. Not for use
// while another thread runs Forward.
class ScopedBf16Path {
 public:
  explicit ScopedBf16Path(Bf16Path path);
  ~ScopedBf16Path();
  ScopedBf16Path(const ScopedBf16Path&) = delete;
  ScopedBf16Path& operator=(const ScopedBf16Path&) = delete;

 private:
  Bf16Path previous_;
};

// Restricts dispatch to one target while alive (tests, `salience check`).
class ScopedTarget {
 public:
  explicit ScopedTarget(std::int64_t target);
  ~ScopedTarget();
  ScopedTarget(const ScopedTarget&) = delete;
  ScopedTarget& operator=(const ScopedTarget&) = delete;
};

}  // namespace salience::simd
