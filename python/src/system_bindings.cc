// salience._salience.build_info, machine_info and measure_peak: what this
// build compiled, what this CPU runs of it, and the CPU's measured peaks
// (the `salience peak` probe, tools/peak.h), for `python -m salience`.
//
// This file is compiled with the kernels' Highway target policy
// (SALIENCE_HWY_DEFINITIONS), so HWY_TARGETS here is the set of targets every
// kernel file was compiled for.
#include <hwy/targets.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <omp.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bindings.h"
#include "kernels/simd/forward.h"
#include "tools/peak.h"

namespace salience::python {
namespace {

std::vector<std::string> TargetNames(std::int64_t targets) {
  std::vector<std::string> names;
  for (std::int64_t bits = targets; bits != 0; bits &= bits - 1) {
    names.emplace_back(hwy::TargetName(bits & -bits));  // best first
  }
  return names;
}

std::string CompilerName() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown compiler";
#endif
}

nb::dict BuildInfo() {
  nb::dict info;
  info["version"] = SALIENCE_VERSION_STRING;
  info["compiled_targets"] = TargetNames(HWY_TARGETS);
  info["compiler"] = CompilerName();
  info["openmp"] = static_cast<int>(_OPENMP);
  return info;
}

const char* Bf16PathName(simd::Bf16Path path) {
  return path == simd::Bf16Path::kDotProduct ? "dot" : "widen";
}

nb::dict MachineInfo() {
  nb::dict info;
  info["cpu"] = tools::CpuModel();
  std::vector<std::string> runnable;
  for (const std::int64_t target : simd::RunnableTargets()) {
    runnable.emplace_back(simd::TargetName(target));
  }
  info["runnable_targets"] = runnable;
  info["target"] = std::string(simd::TargetName(simd::CurrentTarget()));
  info["bf16_dot"] = simd::CpuHasDotBf16();
  simd::Bf16Path path;
  {
    // The first call measures both bf16 micro-kernels (well under 1 ms).
    nb::gil_scoped_release release;
    path = simd::ChosenBf16Path();
  }
  info["bf16_path"] = Bf16PathName(path);
  info["threads"] = tools::AllThreads();
  return info;
}

nb::dict MeasurePeak(double seconds) {
  if (!(seconds > 0.0 && seconds <= 600.0)) {
    PyErr_SetString(PyExc_ValueError,
                    ("seconds: expected a budget in (0, 600], got " +
                     std::to_string(seconds))
                        .c_str());
    throw nb::python_error();
  }
  tools::Peak peak;
  {
    nb::gil_scoped_release release;
    peak = tools::MeasurePeak(seconds);
  }
  nb::dict row;
  row["cpu"] = peak.cpu;
  row["target"] = peak.target;
  row["threads"] = peak.threads;
  row["fma_gflops_all"] = peak.fma_gflops_all;
  row["fma_gflops_one"] = peak.fma_gflops_one;
  row["bf16_dot_gflops_all"] = peak.bf16_dot_gflops_all;
  row["bf16_dot_gflops_one"] = peak.bf16_dot_gflops_one;
  row["dram_gbs_all"] = peak.dram_gbs_all;
  row["dram_gbs_one"] = peak.dram_gbs_one;
  return row;
}

}  // namespace

void BindSystem(nb::module_& m) {
  m.def("build_info", &BuildInfo,
        "What this build compiled: version, the SIMD targets every kernel was "
        "compiled for (best first), compiler, OpenMP version (yyyymm).");
  m.def("machine_info", &MachineInfo,
        "What this CPU runs: its model name, the compiled targets it can run "
        "(best first), the one dispatch picks, whether it has the bf16 dot "
        "product, the bf16 path ('dot' or 'widen', measured once on the first "
        "call) and the worker threads of num_threads=0.");
  m.def("measure_peak", &MeasurePeak, nb::arg("seconds") = 2.0,
        "This machine's fp32 FMA and bf16 dot GFLOP/s and DRAM read GB/s, on "
        "all cores and on one thread, measured in about `seconds` (the probe "
        "of `salience peak`); the GIL is released meanwhile.");
}

}  // namespace salience::python
