// The peak probe: this machine's fp32 FMA throughput and DRAM read
// bandwidth, measured with its own micro-benchmarks, so that `salience bench`
// can say how close a kernel comes to the hardware.
#pragma once

#include <string>

namespace salience::tools {

struct Peak {
  double fma_gflops_all = 0.0;  // fp32 FMA, one thread per core
  double fma_gflops_one = 0.0;  // fp32 FMA, one thread
  // bf16 dot product with fp32 accumulation (vdpbf16ps, 2 multiply-adds a
  // lane); 0 where the CPU has none.
  double bf16_dot_gflops_all = 0.0;
  double bf16_dot_gflops_one = 0.0;
  double dram_gbs_all = 0.0;    // DRAM read, one thread per core (1e9 B/s)
  double dram_gbs_one = 0.0;    // DRAM read, one thread
  int threads = 1;              // threads of the *_all figures
  std::string cpu;              // /proc/cpuinfo "model name"
  std::string target;           // SIMD target the kernels dispatch to
};

// All six figures, best of several repetitions each, in about
// `seconds_budget` seconds (plus the first touch of the DRAM buffer); the
// *_all figures on `threads` threads (0: AllThreads()).
Peak MeasurePeak(double seconds_budget, int threads = 0);

// fp32 FMA GFLOP/s on `threads` threads, best repetition within `seconds`.
double MeasureFmaGflops(int threads, double seconds);

// bf16 dot-product GFLOP/s likewise; 0 where the CPU has none.
double MeasureDotBf16Gflops(int threads, double seconds);

// Threads the kernels use when asked for "all" (one per core).
int AllThreads();

// CPUs this process may run on (its affinity mask): the most threads a
// measured peak can be had for.
int CpusAvailable();

// The CPU's "model name", or "unknown".
std::string CpuModel();

}  // namespace salience::tools
