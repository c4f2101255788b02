// The peak probe's inner loops, dispatched at run time to the best SIMD
// target the CPU supports (peak_simd.cc compiles them once per target).
#pragma once

#include <cstddef>
#include <cstdint>

namespace salience::tools {

// fp32 flops one call of RunFmaChains performs per iteration: independent
// chains x lanes per vector x 2 (a fused multiply-add is two flops).
std::int64_t FmaFlopsPerIteration();

// Runs `iterations` rounds of FmaFlopsPerIteration() / 2 fused multiply-adds
// on the calling thread, all in registers. Returns a value derived from
// every accumulator so the compiler cannot drop the work.
float RunFmaChains(std::int64_t iterations);

// The same for the bf16 dot product (vdpbf16ps, fp32 accumulation): flops
// per iteration, 0 where the dispatched target has none; call
// RunDotBf16Chains only where simd::CpuHasDotBf16().
std::int64_t DotBf16FlopsPerIteration();
float RunDotBf16Chains(std::int64_t iterations);

// Sum of `count` floats read from `data` (64-byte aligned): the DRAM probe.
float SumFloats(const float* data, std::size_t count);

}  // namespace salience::tools
