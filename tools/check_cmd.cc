#include "tools/check_cmd.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/validate.h"
#include "kernels/ref/backward_ref.h"
#include "kernels/ref/forward_ref.h"
#include "kernels/simd/forward.h"
#include "tools/check_cases.h"
#include "tools/cli_error.h"
#include "tools/fill.h"

namespace salience::tools {
namespace {

// Worst error allowed, relative to the reference's magnitude: out and lse;
// the gradients (summed over up to thousands of rows or keys), relative to
// the largest reference gradient of the case.
constexpr double kTolerance = 2e-5;
constexpr double kGradTolerance = 5e-5;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Inputs of one case, owning every buffer the views and options point to.
struct CaseInputs {
  std::vector<float> q, k, v, mask_f32, slopes;
  std::vector<std::uint8_t> mask_bool;
  TensorView q_view, k_view, v_view;
  AttentionOptions options;
  std::int64_t batch = 1, seq_q = 0, seq_k = 0, head_dim_v = 0;
  // Sequences (batch entries, or varlen sequences) and the mask's row and
  // key extents (the longest sequences when varlen).
  std::int64_t sequences = 1, mask_rows = 0, mask_cols = 0;
};

// One fast-kernel output with the views that describe it.
struct Output {
  std::vector<float> out, lse;
  TensorView out_view, lse_view;
};

// The backward's inputs beyond the forward's (out and lse from the
// reference) and the reference gradients.
struct BackwardInputs {
  std::vector<float> d_out;
  TensorView d_out_view;
  Output forward;
  ref::BackwardResult expected;
  double magnitude = 0.0;  // max |reference gradient|
};

struct Gradients {
  std::vector<float> dq, dk, dv;
  TensorView dq_view, dk_view, dv_view;
};

struct Result {
  double out_error = 0.0, lse_error = 0.0, grad_error = 0.0;
  bool deterministic = true;
  bool pass() const {
    return out_error <= kTolerance && lse_error <= kTolerance &&
           grad_error <= kGradTolerance && deterministic;
  }
};

TensorView View(std::vector<float>& data, bool bhnd, std::int64_t batch,
                std::int64_t seq, std::int64_t heads, std::int64_t dim) {
  data.assign(static_cast<std::size_t>(batch * seq * heads * dim), 0.0f);
  return bhnd ? TensorView::Bhnd(data.data(), DType::kF32, batch, seq, heads,
                                 dim)
              : TensorView::Bnhd(data.data(), DType::kF32, batch, seq, heads,
                                 dim);
}

// Writes NaN into the rows of `view` at and past `valid` for batch entry b.
void PoisonRows(std::vector<float>& data, const TensorView& view,
                std::int64_t b, std::int64_t valid) {
  for (std::int64_t i = valid; i < view.shape[1]; ++i) {
    for (std::int64_t h = 0; h < view.shape[2]; ++h) {
      for (std::int64_t c = 0; c < view.shape[3]; ++c) {
        data[static_cast<std::size_t>(view.Offset(b, i, h, c))] = kNaN;
      }
    }
  }
}

std::int64_t LongestSequence(const std::vector<std::int32_t>& cu_seqlens) {
  std::int64_t longest = 0;
  for (std::size_t s = 1; s < cu_seqlens.size(); ++s) {
    longest =
        std::max<std::int64_t>(longest, cu_seqlens[s] - cu_seqlens[s - 1]);
  }
  return longest;
}

void BuildMask(const CheckCase& c, std::uint64_t seed, CaseInputs* in) {
  std::mt19937_64 engine(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  const bool shared = c.mask == MaskKind::kBoolShared;
  const std::int64_t mb = shared ? 1 : in->sequences;
  const std::int64_t mh = c.mask == MaskKind::kBoolFull ? c.heads_q : 1;
  const std::int64_t rows = in->mask_rows, cols = in->mask_cols;
  const std::size_t count = static_cast<std::size_t>(mb * mh * rows * cols);
  void* data = nullptr;
  DType dtype = DType::kBool;
  if (c.mask == MaskKind::kAdditiveHead) {
    in->mask_f32.resize(count);
    for (float& x : in->mask_f32) {
      x = uniform(engine) < 0.1f ? -std::numeric_limits<float>::infinity()
                                 : 2.0f * uniform(engine) - 1.0f;
    }
    data = in->mask_f32.data();
    dtype = DType::kF32;
  } else {
    in->mask_bool.resize(count);
    for (auto& x : in->mask_bool) x = uniform(engine) < 0.85f ? 1 : 0;
    // A row with every key hidden: out = 0, lse = -inf.
    if (shared && rows > 3) {
      std::fill_n(in->mask_bool.begin() + 3 * cols, cols, 0);
    }
    data = in->mask_bool.data();
  }
  in->options.mask =
      TensorView::Contiguous(data, dtype, 4, {mb, mh, rows, cols});
}

// ALiBi slopes 2^(-8 (h + 1) / H), varied per batch entry when per batch.
void BuildSlopes(const CheckCase& c, CaseInputs* in) {
  const std::int64_t rows = c.alibi == AlibiKind::kPerHead ? 1 : in->sequences;
  for (std::int64_t b = 0; b < rows; ++b) {
    for (std::int64_t h = 0; h < c.heads_q; ++h) {
      in->slopes.push_back(
          std::exp2(-8.0f * (h + 1) / c.heads_q) * (1.0f + 0.25f * b));
    }
  }
  in->options.alibi_slopes = in->slopes;
}

void BuildInputs(const CheckCase& c, std::uint64_t seed, CaseInputs* in) {
  const bool varlen = !c.cu_seqlens_q.empty();
  in->batch = varlen ? 1 : c.batch;
  in->seq_q = varlen ? c.cu_seqlens_q.back() : c.seq_q;
  in->seq_k = varlen ? c.cu_seqlens_k.back() : c.seq_k;
  in->head_dim_v = c.head_dim_v > 0 ? c.head_dim_v : c.head_dim;
  in->sequences = varlen ? std::ssize(c.cu_seqlens_q) - 1 : c.batch;
  in->mask_rows = varlen ? LongestSequence(c.cu_seqlens_q) : in->seq_q;
  in->mask_cols = varlen ? LongestSequence(c.cu_seqlens_k) : in->seq_k;
  in->q_view = View(in->q, c.bhnd, in->batch, in->seq_q, c.heads_q, c.head_dim);
  in->k_view =
      View(in->k, c.bhnd, in->batch, in->seq_k, c.heads_kv, c.head_dim);
  in->v_view =
      View(in->v, c.bhnd, in->batch, in->seq_k, c.heads_kv, in->head_dim_v);
  FillNormal(in->q.data(), in->q.size(), seed);
  FillNormal(in->k.data(), in->k.size(), seed + 1);
  FillNormal(in->v.data(), in->v.size(), seed + 2);
  for (std::int64_t b = 0; b < std::ssize(c.seqlens_q); ++b) {
    PoisonRows(in->q, in->q_view, b, c.seqlens_q[b]);
  }
  for (std::int64_t b = 0; b < std::ssize(c.seqlens_k); ++b) {
    PoisonRows(in->k, in->k_view, b, c.seqlens_k[b]);
    PoisonRows(in->v, in->v_view, b, c.seqlens_k[b]);
  }
  AttentionOptions& o = in->options;
  o.scale = c.scale;
  o.causal = c.causal;
  o.window_left = c.window_left;
  o.window_right = c.window_right;
  o.window_align = c.window_align;
  o.softcap = c.softcap;
  o.seqlens_q = c.seqlens_q;
  o.seqlens_k = c.seqlens_k;
  o.cu_seqlens_q = c.cu_seqlens_q;
  o.cu_seqlens_k = c.cu_seqlens_k;
  if (c.mask != MaskKind::kNone) BuildMask(c, seed + 3, in);
  if (c.alibi != AlibiKind::kNone) BuildSlopes(c, in);
}

// A fresh output, NaN-filled so that any element the kernel fails to write
// shows up as an error.
void ResetOutput(const CheckCase& c, const CaseInputs& in, Output* o) {
  o->out_view = View(o->out, c.bhnd, in.batch, in.seq_q, c.heads_q,
                     in.head_dim_v);
  std::fill(o->out.begin(), o->out.end(), kNaN);
  o->lse.assign(static_cast<std::size_t>(in.batch * c.heads_q * in.seq_q),
                kNaN);
  o->lse_view = TensorView::Contiguous(o->lse.data(), DType::kF32, 3,
                                       {in.batch, c.heads_q, in.seq_q, 0});
}

// max |out - ref| / max |ref|; infinite if the kernel wrote a non-finite
// value where the reference is finite.
double OutError(const std::vector<double>& ref, const Output& o) {
  const TensorView& v = o.out_view;
  double max_ref = 0.0, max_diff = 0.0;
  std::size_t index = 0;
  for (std::int64_t b = 0; b < v.shape[0]; ++b) {
    for (std::int64_t i = 0; i < v.shape[1]; ++i) {
      for (std::int64_t h = 0; h < v.shape[2]; ++h) {
        for (std::int64_t c = 0; c < v.shape[3]; ++c, ++index) {
          const double r = ref[index];
          const double x =
              o.out[static_cast<std::size_t>(v.Offset(b, i, h, c))];
          if (!std::isfinite(x)) return std::numeric_limits<double>::infinity();
          max_ref = std::max(max_ref, std::abs(r));
          max_diff = std::max(max_diff, std::abs(x - r));
        }
      }
    }
  }
  return max_diff == 0.0 ? 0.0 : max_diff / std::max(max_ref, 1e-30);
}

// Worst |lse - ref| / max(1, |ref|); -inf must match -inf exactly.
double LseError(const std::vector<double>& ref, const Output& o) {
  double worst = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i], x = o.lse[i];
    if (std::isinf(r) || !std::isfinite(x)) {
      if (x != r) return std::numeric_limits<double>::infinity();
      continue;
    }
    worst = std::max(worst, std::abs(x - r) / std::max(1.0, std::abs(r)));
  }
  return worst;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// NaN-filled gradient buffers shaped like q, k and v.
void ResetGradients(const CheckCase& c, const CaseInputs& in, Gradients* g) {
  g->dq_view = View(g->dq, c.bhnd, in.batch, in.seq_q, c.heads_q, c.head_dim);
  g->dk_view = View(g->dk, c.bhnd, in.batch, in.seq_k, c.heads_kv, c.head_dim);
  g->dv_view =
      View(g->dv, c.bhnd, in.batch, in.seq_k, c.heads_kv, in.head_dim_v);
  for (auto* v : {&g->dq, &g->dk, &g->dv}) std::fill(v->begin(), v->end(), kNaN);
}

// max |fast - ref| of one gradient, in the reference's logical order;
// infinite where the kernel wrote a non-finite value.
double GradDiff(const std::vector<double>& ref, const std::vector<float>& data,
                const TensorView& v) {
  double max_diff = 0.0;
  std::size_t index = 0;
  for (std::int64_t b = 0; b < v.shape[0]; ++b) {
    for (std::int64_t i = 0; i < v.shape[1]; ++i) {
      for (std::int64_t h = 0; h < v.shape[2]; ++h) {
        for (std::int64_t c = 0; c < v.shape[3]; ++c, ++index) {
          const double x = data[static_cast<std::size_t>(v.Offset(b, i, h, c))];
          if (!std::isfinite(x)) return std::numeric_limits<double>::infinity();
          max_diff = std::max(max_diff, std::abs(x - ref[index]));
        }
      }
    }
  }
  return max_diff;
}

// d_out, the reference forward's out and lse, and the reference gradients.
Status PrepareBackward(const CheckCase& c, const CaseInputs& in,
                       const core::Problem& forward,
                       const ref::ForwardResult& expected, std::uint64_t seed,
                       BackwardInputs* bw) {
  ResetOutput(c, in, &bw->forward);
  core::Problem stored = forward;
  stored.out = bw->forward.out_view;
  stored.lse = &bw->forward.lse_view;
  ref::Store(stored, expected);
  bw->d_out_view =
      View(bw->d_out, c.bhnd, in.batch, in.seq_q, c.heads_q, in.head_dim_v);
  FillNormal(bw->d_out.data(), bw->d_out.size(), seed);
  Gradients scratch;
  ResetGradients(c, in, &scratch);
  core::Problem problem;
  const Status status = core::ValidateBackward(
      in.q_view, in.k_view, in.v_view, bw->forward.out_view, bw->d_out_view,
      bw->forward.lse_view, scratch.dq_view, scratch.dk_view, scratch.dv_view,
      in.options, &problem);
  if (!status.ok()) return status;
  bw->expected = ref::Backward(problem);
  for (const auto* grad : {&bw->expected.dq, &bw->expected.dk, &bw->expected.dv}) {
    for (double x : *grad) bw->magnitude = std::max(bw->magnitude, std::abs(x));
  }
  return Status::Ok();
}

// The fast backward with all threads and with one, on the current target.
Status RunBackward(const CheckCase& c, const CaseInputs& in,
                   const BackwardInputs& bw, Result* result) {
  Gradients all, one;
  AttentionOptions options = in.options;
  for (auto [threads, g] : {std::pair{0, &all}, std::pair{1, &one}}) {
    ResetGradients(c, in, g);
    options.num_threads = threads;
    const Status status = AttentionBackward(
        in.q_view, in.k_view, in.v_view, bw.forward.out_view, bw.d_out_view,
        bw.forward.lse_view, g->dq_view, g->dk_view, g->dv_view, options);
    if (!status.ok()) return status;
  }
  const double diff = std::max({GradDiff(bw.expected.dq, all.dq, all.dq_view),
                                GradDiff(bw.expected.dk, all.dk, all.dk_view),
                                GradDiff(bw.expected.dv, all.dv, all.dv_view)});
  result->grad_error = diff == 0.0 ? 0.0 : diff / std::max(bw.magnitude, 1e-30);
  result->deterministic = result->deterministic && SameBits(all.dq, one.dq) &&
                          SameBits(all.dk, one.dk) && SameBits(all.dv, one.dv);
  return Status::Ok();
}

// Runs the fast kernel with all threads and with one, on the current target.
Status RunTarget(const CheckCase& c, const CaseInputs& in,
                 const ref::ForwardResult& expected, Result* result) {
  Output all, one;
  AttentionOptions options = in.options;
  for (auto [threads, output] : {std::pair{0, &all}, std::pair{1, &one}}) {
    ResetOutput(c, in, output);
    options.num_threads = threads;
    Status status = AttentionForward(in.q_view, in.k_view, in.v_view,
                                     output->out_view, options,
                                     &output->lse_view);
    if (!status.ok()) return status;
  }
  result->out_error = OutError(expected.out, all);
  result->lse_error = LseError(expected.lse, all);
  result->deterministic =
      SameBits(all.out, one.out) && SameBits(all.lse, one.lse);
  return Status::Ok();
}

void Print(const CheckFlags& flags, const std::string& name,
           const char* target, const Result& r) {
  if (flags.json) {
    nlohmann::ordered_json row;
    row["case"] = name;
    row["target"] = target;
    row["out_rel_err"] = r.out_error;
    row["lse_rel_err"] = r.lse_error;
    row["grad_rel_err"] = r.grad_error;
    row["tolerance"] = kTolerance;
    row["grad_tolerance"] = kGradTolerance;
    row["deterministic"] = r.deterministic;
    row["pass"] = r.pass();
    std::cout << row.dump() << std::endl;
    return;
  }
  std::printf("%-32s %-8s %10.2e %10.2e %10.2e %5s  %s\n", name.c_str(), target,
              r.out_error, r.lse_error, r.grad_error, r.deterministic ? "yes" : "NO",
              r.pass() ? "ok" : "FAIL");
  std::fflush(stdout);
}

// Checks one case on every target; returns the number of failures.
int CheckOne(const CheckFlags& flags, const CheckCase& c, std::uint64_t seed) {
  CaseInputs in;
  BuildInputs(c, seed, &in);
  Output scratch;
  ResetOutput(c, in, &scratch);
  core::Problem problem;
  Status status = core::ValidateForward(in.q_view, in.k_view, in.v_view,
                                        scratch.out_view, in.options,
                                        &scratch.lse_view, &problem);
  if (!status.ok()) {
    ReportError("case " + c.name + ": " + status.message(), kExitFailure);
    return 1;
  }
  const ref::ForwardResult expected = ref::Forward(problem);
  BackwardInputs backward;
  status = PrepareBackward(c, in, problem, expected, seed + 7, &backward);
  if (!status.ok()) {
    ReportError("case " + c.name + " (backward): " + status.message(), kExitFailure);
    return 1;
  }
  int failures = 0;
  for (std::int64_t target : simd::RunnableTargets()) {
    simd::ScopedTarget scoped(target);
    Result result;
    status = RunTarget(c, in, expected, &result);
    if (status.ok()) status = RunBackward(c, in, backward, &result);
    if (!status.ok()) {
      ReportError("case " + c.name + " on " + simd::TargetName(target) +
                      ": " + status.message(), kExitFailure);
      ++failures;
      continue;
    }
    Print(flags, c.name, simd::TargetName(target), result);
    failures += result.pass() ? 0 : 1;
  }
  return failures;
}

}  // namespace

int RunCheck(const CheckFlags& flags) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<CheckCase> cases = CheckCases(flags.quick);
  const std::size_t targets = simd::RunnableTargets().size();
  if (!flags.json) {
    std::printf("%-32s %-8s %10s %10s %10s %5s  %s   (tolerance %.0e, gradients %.0e)\n",
                "case", "target", "out err", "lse err", "grad err", "det", "result",
                kTolerance, kGradTolerance);
  }
  int failures = 0;
  std::uint64_t seed = 1000;
  for (const CheckCase& c : cases) failures += CheckOne(flags, c, seed += 10);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (flags.json) {
    nlohmann::ordered_json summary;
    summary["cases"] = cases.size();
    summary["targets"] = targets;
    summary["failures"] = failures;
    summary["seconds"] = seconds;
    std::cout << nlohmann::ordered_json{{"summary", summary}}.dump()
              << std::endl;
  } else {
    std::printf("%zu cases x %zu targets in %.1f s: %s\n", cases.size(),
                targets, seconds,
                failures == 0 ? "all within tolerance"
                              : (std::to_string(failures) + " FAILED").c_str());
  }
  return failures == 0 ? kExitOk : kExitFailure;
}

}  // namespace salience::tools
