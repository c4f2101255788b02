#include "tools/bench_cmd.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <iostream>
#include <new>
#include <utility>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/half.h"
#include "kernels/simd/forward.h"
#include "salience/salience.h"
#include "tools/bench_decode.h"
#include "tools/cli_error.h"
#include "tools/fill.h"
#include "tools/peak.h"

namespace salience::tools {
namespace {

struct Shape {
  std::int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim, head_dim_v;
  Causal causal;
  std::int64_t window_left = -1, window_right = -1;
  bool as_mask = false;
};

// Keys [begin, end) query row i sees: the library's definition (attention.h)
// for the bench's options, used to count FLOPs and to build --as-mask masks.
std::pair<std::int64_t, std::int64_t> VisibleKeys(const Shape& s,
                                                  std::int64_t i) {
  const std::int64_t shift = s.seq_k - s.seq_q;
  std::int64_t begin = 0, end = s.seq_k;
  if (s.causal == Causal::kTopLeft) end = std::min(end, i + 1);
  if (s.causal == Causal::kBottomRight) end = std::min(end, i + shift + 1);
  if (s.window_left >= 0) begin = std::max(begin, i + shift - s.window_left);
  if (s.window_right >= 0) end = std::min(end, i + shift + s.window_right + 1);
  return {begin, std::max(begin, end)};
}

// What a bench run reports about one shape.
struct Timing {
  double seconds = 0.0;  // median over repeats
  double gflops = 0.0;
  double added_mib = 0.0;  // peak resident memory beyond inputs and outputs
};

// A "VmXXX:  N kB" field of /proc/self/status in KiB, or -1.
long StatusKib(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  const std::size_t len = std::strlen(field);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, field, len) == 0 && line[len] == ':') {
      kib = std::strtol(line + len + 1, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kib;
}

// Resets the peak-resident mark (VmHWM) to the current resident size, so
// that the next reading measures what the kernel adds.
void ResetPeakResident() {
  if (std::FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

const char* CausalName(Causal causal) {
  switch (causal) {
    case Causal::kNone: return "none";
    case Causal::kTopLeft: return "top-left";
    case Causal::kBottomRight: return "bottom-right";
  }
  return "?";
}

Causal ParseCausal(const std::string& name) {
  if (name == "top-left") return Causal::kTopLeft;
  if (name == "bottom-right") return Causal::kBottomRight;
  return Causal::kNone;
}

// B=1, H=16, N in {1024, 4096}, D in {64, 128}, dense and causal, and one
// grouped-query shape (32 query heads over 8 KV heads).
std::vector<Shape> StandardShapes() {
  std::vector<Shape> shapes;
  for (std::int64_t n : {1024, 4096}) {
    for (std::int64_t d : {64, 128}) {
      for (Causal c : {Causal::kNone, Causal::kBottomRight}) {
        shapes.push_back({1, 16, 16, n, n, d, d, c});
      }
    }
  }
  shapes.push_back({1, 32, 8, 2048, 2048, 128, 128, Causal::kNone});
  return shapes;
}

Shape ShapeFromFlags(const BenchFlags& f) {
  Shape s;
  s.batch = f.batch > 0 ? f.batch : 1;
  s.heads_q = f.heads_q > 0 ? f.heads_q : 16;
  s.heads_kv = f.heads_kv > 0 ? f.heads_kv : s.heads_q;
  s.seq_q = f.seq_q > 0 ? f.seq_q : 1024;
  s.seq_k = f.seq_k > 0 ? f.seq_k : s.seq_q;
  s.head_dim = f.head_dim > 0 ? f.head_dim : 64;
  s.head_dim_v = f.head_dim_v > 0 ? f.head_dim_v : s.head_dim;
  s.causal = ParseCausal(f.causal);
  s.window_left = f.window_left;
  s.window_right = f.window_right;
  s.as_mask = f.as_mask;
  return s;
}

bool HasShapeFlags(const BenchFlags& f) {
  return f.batch > 0 || f.heads_q > 0 || f.heads_kv > 0 || f.seq_q > 0 ||
         f.seq_k > 0 || f.head_dim > 0 || f.head_dim_v > 0 ||
         !f.causal.empty() || f.window_left >= 0 || f.window_right >= 0;
}

std::string ShapeName(const Shape& s, const std::string& layout) {
  std::string name = "fwd_f32_b" + std::to_string(s.batch) + "_h" +
                     std::to_string(s.heads_q);
  if (s.heads_kv != s.heads_q) name += "kv" + std::to_string(s.heads_kv);
  name += "_n" + std::to_string(s.seq_q);
  if (s.seq_k != s.seq_q) name += "x" + std::to_string(s.seq_k);
  name += "_d" + std::to_string(s.head_dim);
  if (s.head_dim_v != s.head_dim) name += "v" + std::to_string(s.head_dim_v);
  if (s.causal == Causal::kTopLeft) name += "_causal-tl";
  if (s.causal == Causal::kBottomRight) name += "_causal-br";
  if (s.window_left >= 0 || s.window_right >= 0) {
    name += "_w" + std::to_string(s.window_left) + "," + std::to_string(s.window_right);
  }
  if (s.as_mask) name += "_as-mask";
  if (layout != "bnhd") name += "_" + layout;
  return name;
}

// (query, key) pairs the kernel must compute. Causal square shapes count
// half of N^2, the convention of flash-attn's and PEERS.md's figures;
// other masked shapes count the visible pairs exactly.
double VisiblePairs(const Shape& s) {
  const bool windowed = s.window_left >= 0 || s.window_right >= 0;
  const double dense = static_cast<double>(s.seq_q) * s.seq_k;
  if (s.causal == Causal::kNone && !windowed) return dense;
  if (s.seq_q == s.seq_k && !windowed) return dense / 2.0;
  double pairs = 0.0;
  for (std::int64_t i = 0; i < s.seq_q; ++i) {
    const auto [begin, end] = VisibleKeys(s, i);
    pairs += static_cast<double>(end - begin);
  }
  return pairs;
}

// QK^T costs 2*D flops per pair, PV 2*Dv.
double Flops(const Shape& s) {
  return 2.0 * s.batch * s.heads_q * VisiblePairs(s) *
         static_cast<double>(s.head_dim + s.head_dim_v);
}

TensorView View(std::vector<float>& data, const std::string& layout,
                const Shape& s, std::int64_t seq, std::int64_t heads,
                std::int64_t dim) {
  return layout == "bhnd"
             ? TensorView::Bhnd(data.data(), DType::kF32, s.batch, seq, heads,
                                dim)
             : TensorView::Bnhd(data.data(), DType::kF32, s.batch, seq, heads,
                                dim);
}

DType ParseDType(const std::string& name) {
  if (name == "bf16") return DType::kBF16;
  if (name == "f16") return DType::kF16;
  return DType::kF32;
}

// `view` (fp32, filled) in `dtype`: a rounded copy held in `storage`, or
// the view itself for f32.
TensorView InDType(const TensorView& view, DType dtype, std::size_t count,
                   std::vector<std::uint16_t>* storage) {
  if (dtype == DType::kF32) return view;
  const auto* values = static_cast<const float*>(view.data);
  storage->resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    (*storage)[i] = dtype == DType::kBF16 ? core::BF16FromF32(values[i])
                                          : core::F16FromF32(values[i]);
  }
  TensorView narrow = view;
  narrow.data = storage->data();
  narrow.dtype = dtype;
  return narrow;
}

// Element count of a [b, n, h, d] tensor; false on overflow.
bool Elements(const Shape& s, std::int64_t seq, std::int64_t heads,
              std::int64_t dim, std::size_t* count) {
  std::size_t n = 0;
  return !__builtin_mul_overflow(static_cast<std::size_t>(s.batch),
                                 static_cast<std::size_t>(seq), &n) &&
         !__builtin_mul_overflow(n, static_cast<std::size_t>(heads), &n) &&
         !__builtin_mul_overflow(n, static_cast<std::size_t>(dim), count);
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid]
                           : 0.5 * (values[mid - 1] + values[mid]);
}

// Allocates and fills the tensors, runs warm-up and timed repeats.
// Returns a non-zero exit code after reporting an error.
int TimeShape(const Shape& s, const BenchFlags& flags, Timing* timing) {
  std::size_t q_count = 0, k_count = 0, v_count = 0, out_count = 0;
  if (!Elements(s, s.seq_q, s.heads_q, s.head_dim, &q_count) ||
      !Elements(s, s.seq_k, s.heads_kv, s.head_dim, &k_count) ||
      !Elements(s, s.seq_k, s.heads_kv, s.head_dim_v, &v_count) ||
      !Elements(s, s.seq_q, s.heads_q, s.head_dim_v, &out_count)) {
    return ReportError("shape too large: element count overflows",
                       kExitUsage);
  }
  std::vector<float> q, k, v, out;
  try {
    q.resize(q_count);
    k.resize(k_count);
    v.resize(v_count);
    out.resize(out_count);
  } catch (const std::bad_alloc&) {
    const double gib = 4.0 * (q_count + k_count + v_count + out_count) /
                       (1024.0 * 1024.0 * 1024.0);
    char message[128];
    std::snprintf(message, sizeof message,
                  "cannot allocate %.2f GiB for q, k, v and out", gib);
    return ReportError(message, kExitFailure);
  }
  FillNormal(q.data(), q.size(), 1);
  FillNormal(k.data(), k.size(), 2);
  FillNormal(v.data(), v.size(), 3);
  const std::string& layout = flags.layout;
  // --dtype bf16/f16: 16-bit copies of the inputs and a 16-bit out.
  const DType dtype = ParseDType(flags.dtype);
  std::vector<std::uint16_t> q16, k16, v16, out16;
  const TensorView q_view =
      InDType(View(q, layout, s, s.seq_q, s.heads_q, s.head_dim), dtype, q_count, &q16);
  const TensorView k_view =
      InDType(View(k, layout, s, s.seq_k, s.heads_kv, s.head_dim), dtype, k_count, &k16);
  const TensorView v_view =
      InDType(View(v, layout, s, s.seq_k, s.heads_kv, s.head_dim_v), dtype, v_count, &v16);
  const TensorView out_view =
      InDType(View(out, layout, s, s.seq_q, s.heads_q, s.head_dim_v), dtype, out_count, &out16);
  AttentionOptions options;
  options.num_threads = flags.threads;
  std::vector<std::uint8_t> mask;
  if (s.as_mask) {
    mask.assign(static_cast<std::size_t>(s.seq_q * s.seq_k), 0);
    for (std::int64_t i = 0; i < s.seq_q; ++i) {
      const auto [begin, end] = VisibleKeys(s, i);
      std::fill(mask.begin() + i * s.seq_k + begin, mask.begin() + i * s.seq_k + end, 1);
    }
    options.mask = TensorView::Contiguous(mask.data(), DType::kBool, 4,
                                          {1, 1, s.seq_q, s.seq_k});
  } else {
    options.causal = s.causal;
    options.window_left = s.window_left;
    options.window_right = s.window_right;
  }

  // --backward: the forward's out and lse once, then dq, dk, dv per run.
  std::vector<float> d_out, dq, dk, dv, lse;
  TensorView lse_view;
  if (flags.backward) {
    try {
      d_out.resize(out_count);
      dq.resize(q_count);
      dk.resize(k_count);
      dv.resize(v_count);
      lse.resize(static_cast<std::size_t>(s.batch * s.heads_q * s.seq_q));
    } catch (const std::bad_alloc&) {
      return ReportError("cannot allocate the gradients", kExitFailure);
    }
    FillNormal(d_out.data(), d_out.size(), 4);
    lse_view = TensorView::Contiguous(lse.data(), DType::kF32, 3, {s.batch, s.heads_q, s.seq_q, 0});
    const Status status = AttentionForward(q_view, k_view, v_view, out_view, options, &lse_view);
    if (!status.ok()) return ReportError(status.message(), kExitFailure);
  }
  const auto run_kernel = [&]() {
    if (!flags.backward) return AttentionForward(q_view, k_view, v_view, out_view, options);
    return AttentionBackward(q_view, k_view, v_view, out_view,
                             View(d_out, layout, s, s.seq_q, s.heads_q, s.head_dim_v), lse_view,
                             View(dq, layout, s, s.seq_q, s.heads_q, s.head_dim),
                             View(dk, layout, s, s.seq_k, s.heads_kv, s.head_dim),
                             View(dv, layout, s, s.seq_k, s.heads_kv, s.head_dim_v), options);
  };

  // Inputs and output are allocated and touched; what the resident peak
  // grows by from here is the kernel's workspace.
  ResetPeakResident();
  const long resident_before = StatusKib("VmRSS");
  std::vector<double> seconds;
  for (int run = 0; run < flags.warmup + flags.repeats; ++run) {
    const auto start = std::chrono::steady_clock::now();
    const Status status = run_kernel();
    const auto stop = std::chrono::steady_clock::now();
    if (!status.ok()) return ReportError(status.message(), kExitFailure);
    if (run >= flags.warmup) {
      seconds.push_back(std::chrono::duration<double>(stop - start).count());
    }
  }
  const long peak = StatusKib("VmHWM");
  timing->added_mib = resident_before >= 0 && peak >= 0
                          ? std::max(0L, peak - resident_before) / 1024.0
                          : -1.0;
  timing->seconds = Median(seconds);
  timing->gflops = (flags.backward ? 2.5 : 1.0) * Flops(s) / timing->seconds * 1e-9;
  return kExitOk;
}

struct Machine {
  std::string cpu, target;
  int threads = 1;
  double peak_gflops = 0.0;
  const char* peak_name = "fp32 FMA";
};

// The dtype's peak, measured on the thread count the bench uses. A
// dtype's peak is its fastest fp32-accumulating path: the fp32 FMA, or for
// bf16 the bf16 dot product where the CPU has it and it is faster.
Machine ProbeMachine(int requested_threads, const std::string& dtype) {
  constexpr double kProbeSeconds = 0.3;
  Machine m;
  m.cpu = CpuModel();
  m.target = simd::TargetName(simd::CurrentTarget());
  m.threads = requested_threads == 0 ? AllThreads() : requested_threads;
  m.peak_gflops = MeasureFmaGflops(m.threads, kProbeSeconds);
  if (dtype == "bf16") {
    const double dot = MeasureDotBf16Gflops(m.threads, kProbeSeconds);
    if (dot > m.peak_gflops) {
      m.peak_gflops = dot;
      m.peak_name = "bf16 dot";
    }
  }
  return m;
}

void PrintJson(const std::string& name, const Shape& s, const Machine& m,
               const Timing& t, const BenchFlags& flags) {
  nlohmann::ordered_json row;
  row["name"] = name;
  row["dtype"] = flags.dtype;
  if (flags.dtype == "bf16") row["bf16_path"] = flags.bf16_path;
  row["batch"] = s.batch;
  row["heads_q"] = s.heads_q;
  row["heads_kv"] = s.heads_kv;
  row["seq_q"] = s.seq_q;
  row["seq_k"] = s.seq_k;
  row["head_dim"] = s.head_dim;
  row["head_dim_v"] = s.head_dim_v;
  row["causal"] = CausalName(s.causal);
  row["window_left"] = s.window_left;
  row["window_right"] = s.window_right;
  row["as_mask"] = s.as_mask;
  row["threads"] = m.threads;
  row["seconds"] = t.seconds;
  row["gflops"] = t.gflops;
  row["peak_gflops"] = m.peak_gflops;
  row["peak_kind"] = m.peak_name;
  row["pct_of_peak"] = 100.0 * t.gflops / m.peak_gflops;
  row["added_mib"] = t.added_mib;
  row["target"] = m.target;
  row["cpu"] = m.cpu;
  std::cout << row.dump() << std::endl;
}

void PrintHeader(const Machine& m) {
  std::printf("cpu %s, target %s, %d threads, %s peak %.1f GFLOP/s\n",
              m.cpu.c_str(), m.target.c_str(), m.threads, m.peak_name, m.peak_gflops);
  std::printf("%-36s %12s %10s %8s %10s\n", "name", "median ms", "GFLOP/s",
              "% peak", "+MiB");
}

void PrintRow(const std::string& name, const Machine& m, const Timing& t) {
  std::printf("%-36s %12.3f %10.1f %8.1f %10.1f\n", name.c_str(),
              t.seconds * 1e3, t.gflops, 100.0 * t.gflops / m.peak_gflops,
              t.added_mib);
  std::fflush(stdout);
}

}  // namespace

int RunBench(const BenchFlags& flags) {
  if (flags.decode) return RunDecodeBench(flags);
  if (flags.backward && flags.dtype != "f32") {
    return ReportError("--backward --dtype " + flags.dtype +
                           ": not supported yet (the backward is f32 only)",
                       kExitUsage);
  }
  const simd::Bf16Path path = flags.bf16_path == "dot"     ? simd::Bf16Path::kDotProduct
                              : flags.bf16_path == "widen" ? simd::Bf16Path::kWiden
                                                           : simd::Bf16Path::kAuto;
  const simd::ScopedBf16Path bf16_path(path);
  const std::vector<Shape> shapes = HasShapeFlags(flags)
                                        ? std::vector<Shape>{ShapeFromFlags(
                                              flags)}
                                        : StandardShapes();
  const Machine machine = ProbeMachine(flags.threads, flags.dtype);
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    Timing timing;
    const int code = TimeShape(shapes[i], flags, &timing);
    if (code != kExitOk) return code;
    std::string name = ShapeName(shapes[i], flags.layout);
    if (flags.backward) name.replace(0, 3, "bwd");
    name.replace(4, 3, flags.dtype);  // "fwd_f32_..." names the dtype
    if (flags.json) {
      PrintJson(name, shapes[i], machine, timing, flags);
      continue;
    }
    if (i == 0) PrintHeader(machine);  // after the first shape validated
    PrintRow(name, machine, timing);
  }
  return kExitOk;
}

}  // namespace salience::tools
