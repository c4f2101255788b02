#include "tools/peak.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <hwy/aligned_allocator.h>

#include "core/validate.h"
#include "kernels/simd/forward.h"
#include "tools/peak_simd.h"

namespace salience::tools {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Keeps the probes' results observable so no loop is optimized away.
volatile float g_sink = 0.0f;

// Runs `body(thread_index)` on `threads` threads at once; returns the wall
// time from the fork to the last thread's finish.
template <typename Body>
double TimeParallel(int threads, const Body& body) {
  std::vector<float> results(static_cast<std::size_t>(threads), 0.0f);
  const Clock::time_point start = Clock::now();
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    results[static_cast<std::size_t>(t)] = body(t);
  }
  const double seconds = SecondsSince(start);
  float total = 0.0f;
  for (float r : results) total += r;
  g_sink = total;
  return seconds;
}

// Repeats `rep` (which returns a rate) until `seconds` have passed and at
// least three repetitions ran; the best rate is the one least disturbed by
// clock ramp-up, interrupts and neighbours.
template <typename Rep>
double BestRate(double seconds, const Rep& rep) {
  const Clock::time_point start = Clock::now();
  double best = 0.0;
  for (int i = 0; i < 3 || SecondsSince(start) < seconds; ++i) {
    best = std::max(best, rep());
  }
  return best;
}

// Bytes of the last-level cache, 0 when unknown.
std::int64_t L3Bytes() {
  const long from_sysconf = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (from_sysconf > 0) return from_sysconf;
  std::ifstream file("/sys/devices/system/cpu/cpu0/cache/index3/size");
  std::int64_t kib = 0;
  if (file >> kib) return kib * 1024;  // written as e.g. "32768K"
  return 0;
}

// MemAvailable from /proc/meminfo in bytes, 0 when unknown.
std::int64_t AvailableBytes() {
  std::ifstream file("/proc/meminfo");
  std::string key;
  std::int64_t kib = 0;
  std::string unit;
  while (file >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

// The DRAM probe's buffer: at least 4x the last-level cache (so no pass
// is served from cache), at least 1 GiB, at most half the free memory.
std::int64_t DramBufferBytes() {
  constexpr std::int64_t kGiB = std::int64_t{1} << 30;
  std::int64_t bytes = std::max<std::int64_t>(kGiB, 4 * L3Bytes());
  const std::int64_t available = AvailableBytes();
  if (available > 0) bytes = std::min(bytes, available / 2);
  return std::max<std::int64_t>(bytes, 64 << 20);
}

// Best DRAM read bandwidth (1e9 B/s) over `threads` threads, each summing
// its own slice; the slices were first touched by the same threads.
double MeasureReadGbs(const float* data, std::size_t count, int threads,
                      double seconds) {
  const std::size_t slice = count / static_cast<std::size_t>(threads);
  const double bytes = static_cast<double>(slice) * threads * sizeof(float);
  return BestRate(seconds, [&] {
    const double elapsed = TimeParallel(threads, [&](int t) {
      return SumFloats(data + slice * static_cast<std::size_t>(t), slice);
    });
    return bytes / elapsed * 1e-9;
  });
}

void MeasureDram(double seconds, Peak* peak) {
  std::int64_t bytes = DramBufferBytes();
  hwy::AlignedFreeUniquePtr<float[]> buffer;
  // Halve the request until an allocation succeeds.
  for (; bytes >= (64 << 20); bytes /= 2) {
    buffer = hwy::AllocateAligned<float>(
        static_cast<std::size_t>(bytes) / sizeof(float));
    if (buffer) break;
  }
  if (!buffer) return;
  const std::size_t count = static_cast<std::size_t>(bytes) / sizeof(float);
  const int threads = peak->threads;
  const std::size_t slice = count / static_cast<std::size_t>(threads);
  // First touch by the thread that will read the slice (NUMA placement).
#pragma omp parallel num_threads(threads)
  {
    float* begin = buffer.get() + slice * omp_get_thread_num();
    std::fill(begin, begin + slice, 1.0f);
  }
  peak->dram_gbs_all = MeasureReadGbs(buffer.get(), count, threads, seconds);
  peak->dram_gbs_one = MeasureReadGbs(buffer.get(), count, 1, seconds);
}

}  // namespace

int AllThreads() { return core::ResolveThreads(0); }

int CpusAvailable() { return std::max(1, omp_get_num_procs()); }

std::string CpuModel() {
  std::ifstream file("/proc/cpuinfo");
  std::string line;
  while (std::getline(file, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) break;
    const std::size_t first = line.find_first_not_of(" \t", colon + 1);
    return first == std::string::npos ? "unknown" : line.substr(first);
  }
  return "unknown";
}

namespace {

// GFLOP/s of `run(iterations)` (register-only chains of `flops_per_iteration`
// flops) on `threads` threads, best repetition within `seconds`.
template <typename Run>
double MeasureChainsGflops(int threads, double seconds,
                           std::int64_t flops_per_iteration, const Run& run) {
  // Short repetitions (a few ms, timed on one thread; every thread runs
  // the same count) so that among many of them some see no preemption by
  // other processes on a shared machine; the best one is reported.
  const double rep_seconds = std::clamp(seconds / 32.0, 0.002, 0.01);
  std::int64_t iterations = 1 << 14;
  for (;;) {
    const Clock::time_point start = Clock::now();
    g_sink = run(iterations);
    const double elapsed = SecondsSince(start);
    if (elapsed >= rep_seconds / 4 || iterations > (std::int64_t{1} << 40)) {
      iterations = static_cast<std::int64_t>(iterations * rep_seconds /
                                             std::max(elapsed, 1e-9));
      break;
    }
    iterations *= 4;
  }
  iterations = std::max<std::int64_t>(iterations, 1024);
  const double flops =
      static_cast<double>(flops_per_iteration) * iterations * threads;
  return BestRate(seconds, [&] {
    const double elapsed =
        TimeParallel(threads, [&](int) { return run(iterations); });
    return flops / elapsed * 1e-9;
  });
}

}  // namespace

double MeasureFmaGflops(int threads, double seconds) {
  return MeasureChainsGflops(threads, seconds, FmaFlopsPerIteration(),
                             [](std::int64_t n) { return RunFmaChains(n); });
}

double MeasureDotBf16Gflops(int threads, double seconds) {
  if (!simd::CpuHasDotBf16() || DotBf16FlopsPerIteration() == 0) return 0.0;
  return MeasureChainsGflops(threads, seconds, DotBf16FlopsPerIteration(),
                             [](std::int64_t n) { return RunDotBf16Chains(n); });
}

Peak MeasurePeak(double seconds_budget, int threads) {
  Peak peak;
  peak.threads = threads > 0 ? threads : AllThreads();
  peak.cpu = CpuModel();
  peak.target = simd::TargetName(simd::CurrentTarget());
  const double sixth = seconds_budget / 6.0;
  peak.fma_gflops_all = MeasureFmaGflops(peak.threads, sixth);
  peak.fma_gflops_one = MeasureFmaGflops(1, sixth);
  peak.bf16_dot_gflops_all = MeasureDotBf16Gflops(peak.threads, sixth);
  peak.bf16_dot_gflops_one = MeasureDotBf16Gflops(1, sixth);
  MeasureDram(sixth, &peak);
  return peak;
}

}  // namespace salience::tools
