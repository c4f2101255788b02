// The `salience` command line: peak, bench and check, and embed and explain
// where the model layer is built (SALIENCE_CLI_MODEL). Flags are parsed here;
// each subcommand's work lives in its own file.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <limits>
#include <new>
#include <nlohmann/json.hpp>
#include <string>

#include "salience/version.h"
#include "tools/bench_cmd.h"
#include "tools/check_cmd.h"
#include "tools/cli_error.h"
#include "tools/peak.h"
#if SALIENCE_CLI_MODEL
#include "tools/embed_cmd.h"
#include "tools/explain_cmd.h"
#endif
#include "tools/flags.h"

namespace salience::tools {
namespace {

struct PeakFlags {
  double seconds = 2.0;
  bool json = false;
};

int RunPeak(const PeakFlags& flags) {
  const Peak peak = MeasurePeak(flags.seconds);
  if (flags.json) {
    nlohmann::ordered_json row;
    row["cpu"] = peak.cpu;
    row["target"] = peak.target;
    row["threads"] = peak.threads;
    row["fma_gflops_all"] = peak.fma_gflops_all;
    row["fma_gflops_one"] = peak.fma_gflops_one;
    row["bf16_dot_gflops_all"] = peak.bf16_dot_gflops_all;
    row["bf16_dot_gflops_one"] = peak.bf16_dot_gflops_one;
    row["dram_gbs_all"] = peak.dram_gbs_all;
    row["dram_gbs_one"] = peak.dram_gbs_one;
    std::cout << row.dump() << std::endl;
    return kExitOk;
  }
  std::printf("cpu       %s\ntarget    %s\nthreads   %d\n", peak.cpu.c_str(),
              peak.target.c_str(), peak.threads);
  std::printf("%-10s %14s %14s\n", "", "all threads", "one thread");
  std::printf("%-10s %8.1f GFLOP/s %7.1f GFLOP/s\n", "fp32 FMA",
              peak.fma_gflops_all, peak.fma_gflops_one);
  if (peak.bf16_dot_gflops_one > 0.0) {
    std::printf("%-10s %8.1f GFLOP/s %7.1f GFLOP/s\n", "bf16 dot",
                peak.bf16_dot_gflops_all, peak.bf16_dot_gflops_one);
  } else {
    std::printf("%-10s %14s %14s\n", "bf16 dot", "none", "none");
  }
  std::printf("%-10s %11.1f GB/s %10.1f GB/s\n", "DRAM read",
              peak.dram_gbs_all, peak.dram_gbs_one);
  return kExitOk;
}

void AddPeak(CLI::App& app, PeakFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "peak", "Measure this machine's fp32 FMA and DRAM read peaks");
  cmd->add_flag("--json", flags.json, "One JSON object on stdout");
  cmd->add_option("--seconds", flags.seconds, "Time budget of the probes")
      ->check(FiniteRange(0.01, 600.0))
      ->capture_default_str();
}

CLI::App* AddBench(CLI::App& app, BenchFlags& f) {
  CLI::App* cmd = app.add_subcommand(
      "bench", "Time the fused forward (standard shapes without shape flags)");
  constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
  const auto size = [&](const char* name, std::int64_t& value,
                        const char* help) {
    cmd->add_option(name, value, help)->check(IntRange(1, kInt64Max));
  };
  size("--batch", f.batch, "Batch size, >= 1 (default 1)");
  size("--heads-q", f.heads_q, "Query heads (default 16)");
  size("--heads-kv", f.heads_kv, "Key/value heads (default: heads-q)");
  size("--seq-q", f.seq_q, "Query length (default 1024)");
  size("--seq-k", f.seq_k,
       "Key length (default: seq-q; with --decode the single sequence's "
       "cached tokens, default 32768, at most 2^31 - 1)");
  size("--head-dim", f.head_dim, "Head dim of q and k (default 64)");
  size("--head-dim-v", f.head_dim_v, "Head dim of v (default: head-dim)");
  cmd->add_option("--causal", f.causal, "Causal mask (default none)")
      ->check(CLI::IsMember({"none", "top-left", "bottom-right"}));
  cmd->add_option("--window-left", f.window_left,
                  "Sliding window: keys before the diagonal (-1 unbounded)")
      ->check(IntRange(-1, kInt64Max));
  cmd->add_option("--window-right", f.window_right,
                  "Sliding window: keys after the diagonal (-1 unbounded)")
      ->check(IntRange(-1, kInt64Max));
  cmd->add_flag("--as-mask", f.as_mask,
                "Pass causal/window as a bool mask tensor instead of options");
  cmd->add_flag("--backward", f.backward,
                "Time the backward (dq, dk, dv) instead of the forward");
  cmd->add_option("--dtype", f.dtype,
                  "Element type of q, k, v and out (fp32 accumulation); % of "
                  "peak is of the dtype's fastest fp32-accumulating path")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  cmd->add_option("--bf16-path", f.bf16_path,
                  "With --dtype bf16: auto (calibrated), dot (vdpbf16ps) or "
                  "widen (fp32 micro-kernels)")
      ->check(CLI::IsMember({"auto", "dot", "widen"}))
      ->capture_default_str();
  cmd->add_option("--layout", f.layout,
                  "Memory order of q, k, v, out (with --decode: of the cache)")
      ->check(CLI::IsMember({"bnhd", "bhnd"}))
      ->capture_default_str();
  // The peak a run is compared with is measured on the same thread count,
  // so no more threads than the CPUs this process may run on.
  cmd->add_option("--threads", f.threads,
                  "Worker threads, 0 = one per core; at most the CPUs this "
                  "process may use (the peak is measured on as many)")
      ->check(IntRange(0, CpusAvailable()))
      ->capture_default_str();
  cmd->add_option("--repeats", f.repeats, "Timed runs (median reported)")
      ->check(IntRange(1, 1'000'000))
      ->capture_default_str();
  cmd->add_option("--warmup", f.warmup, "Untimed runs first")
      ->check(IntRange(0, 1'000'000))
      ->capture_default_str();
  cmd->add_flag("--json", f.json, "One JSON object per shape on stdout");
  cmd->add_flag("--decode", f.decode,
                "Decode shapes against a KV cache: cache GB/s vs DRAM (fixed "
                "shapes: takes --seq-k, --layout, --threads, --repeats, "
                "--warmup and --json only)");
  return cmd;
}

// Flags `bench` would ignore in the mode the others choose are errors; ""
// when there are none.
std::string BenchFlagConflicts(const CLI::App& bench, const BenchFlags& f) {
  if (f.decode) {
    const std::string unused = GivenFlags(
        bench, {"--batch", "--heads-q", "--heads-kv", "--seq-q", "--head-dim",
                "--head-dim-v", "--causal", "--window-left", "--window-right",
                "--as-mask", "--backward", "--dtype", "--bf16-path"});
    if (!unused.empty())
      return unused +
             ": not used by --decode, whose shapes are fixed (--seq-k sets "
             "the single sequence's length; see --help)";
    if (f.seq_k > std::numeric_limits<std::int32_t>::max())
      return "--seq-k " + std::to_string(f.seq_k) +
             ": a decode cache holds at most 2147483647 tokens a sequence";
    return "";
  }
  if (bench.count("--bf16-path") > 0 && f.dtype != "bf16")
    return "--bf16-path: only with --dtype bf16";
  return "";
}

void AddCheck(CLI::App& app, CheckFlags& flags) {
  CLI::App* cmd = app.add_subcommand(
      "check", "Compare every SIMD target with the fp64 reference");
  cmd->add_flag("--quick", flags.quick, "The short subset of cases");
  cmd->add_flag("--json", flags.json, "One JSON object per result on stdout");
}

int Main(int argc, char** argv) {
  CLI::App app("salience " SALIENCE_VERSION_STRING
               ": exact attention on CPUs",
               "salience");
  app.set_version_flag("--version", SALIENCE_VERSION_STRING);
  app.require_subcommand(1);
  PeakFlags peak_flags;
  BenchFlags bench_flags;
  CheckFlags check_flags;
  AddPeak(app, peak_flags);
  const CLI::App* bench = AddBench(app, bench_flags);
  AddCheck(app, check_flags);
#if SALIENCE_CLI_MODEL
  EmbedFlags embed_flags;
  ExplainFlags explain_flags;
  AddEmbed(app, embed_flags);
  AddExplain(app, explain_flags);
  constexpr const char* kSubcommands = "peak, bench, check, embed or explain";
#else
  constexpr const char* kSubcommands = "peak, bench or check";
#endif

  // An unknown first word is a mistyped subcommand, not a stray argument.
  const std::string first = argc > 1 ? argv[1] : "";
  const CLI::App& defined = app;
  const auto named = [&first](const CLI::App* sub) {
    return sub->get_name() == first;
  };
  if (!first.empty() && first[0] != '-' &&
      defined.get_subcommands(named).empty()) {
    return ReportError(std::string("unknown subcommand '") + argv[1] +
                           "' (expected " + kSubcommands + "; see --help)",
                       kExitUsage);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    return ReportError(std::string(e.what()) + " (see --help)", kExitUsage);
  }
  if (app.got_subcommand("peak")) return RunPeak(peak_flags);
  if (app.got_subcommand("bench")) {
    const std::string conflict = BenchFlagConflicts(*bench, bench_flags);
    if (!conflict.empty()) return ReportError(conflict, kExitUsage);
    return RunBench(bench_flags);
  }
#if SALIENCE_CLI_MODEL
  if (app.got_subcommand("embed")) return RunEmbed(embed_flags);
  if (app.got_subcommand("explain")) return RunExplain(explain_flags);
#endif
  return RunCheck(check_flags);
}

}  // namespace
}  // namespace salience::tools

int main(int argc, char** argv) {
  try {
    const int code = salience::tools::Main(argc, argv);
    // Output that did not arrive fails the command (a command that failed
    // already said why).
    std::string error;
    if (salience::tools::FlushStdout(&error) ||
        code != salience::tools::kExitOk)
      return code;
    return salience::tools::ReportError(error, salience::tools::kExitFailure);
  } catch (const std::bad_alloc&) {
    return salience::tools::ReportError("out of memory",
                                        salience::tools::kExitFailure);
  } catch (const std::exception& e) {
    return salience::tools::ReportError(e.what(),
                                        salience::tools::kExitFailure);
  }
}
