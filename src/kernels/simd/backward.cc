// Dispatch boundary of the fused backward: plans phases, clears the
// gradients, computes D = rowsum(dO o O), runs the work items and the dQ
// reductions on OpenMP threads, and picks the SIMD target at run time.
#include "kernels/simd/backward.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <new>
#include <vector>

#include "core/problem.h"
#include "kernels/simd/backward_schedule.h"
#include "kernels/simd/workspace.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/backward.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/simd/backward-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

struct BackwardWorkspaceTag {};

// Zeroes row `flat_row` (of batch x seq) of a [batch, seq, heads, dim]
// view, every head, in the view's dtype.
inline void ClearRow(const TensorView& view, std::int64_t flat_row) {
  static constexpr float kZeros[kMaxHeadDim] = {};
  const std::int64_t b = flat_row / view.shape[1], row = flat_row % view.shape[1];
  for (std::int64_t h = 0; h < view.shape[2]; ++h) {
    WriteRow(kZeros, view.shape[3], 1.0f, view, view.Offset(b, row, h, 0));
  }
}

// D[b][h][row] = sum_c dO[b][row][h][c] out[b][row][h][c] for one row of
// every head, in double: it is subtracted from dP, where cancellation
// would otherwise cost digits.
inline void RowDots(const core::Problem& p, const core::SeqSpan& seq, std::int64_t row,
                    float* dsum) {
  HWY_ALIGN float out[kRowBuffer];
  HWY_ALIGN float d_out[kRowBuffer];
  const std::int64_t at = seq.q_begin + row;
  for (std::int64_t h = 0; h < p.heads_q; ++h) {
    ReadRow(p.out, p.out.Offset(seq.tensor_batch, at, h, 0), p.head_dim_v, 1.0f, out);
    ReadRow(p.d_out, p.d_out.Offset(seq.tensor_batch, at, h, 0), p.head_dim_v, 1.0f, d_out);
    double sum = 0.0;
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      sum += static_cast<double>(out[c]) * d_out[c];
    }
    dsum[(seq.tensor_batch * p.heads_q + h) * p.q.shape[1] + at] = static_cast<float>(sum);
  }
}

Status BackwardImpl(const core::Problem& p) {
  constexpr std::size_t N = TileTraits::kLanes;
  const std::size_t depth = static_cast<std::size_t>(p.head_dim);
  const std::size_t dv = static_cast<std::size_t>(p.head_dim_v);
  const std::size_t d_pad = (depth + N - 1) / N * N;
  const std::size_t dv_pad = (dv + N - 1) / N * N;
  try {
    const std::vector<BackwardPhase> phases =
        PlanBackward(p, kBackwardQTileRows, TileTraits::kMicroRows, TileTraits::kKvBlock,
                     static_cast<std::int64_t>(d_pad), BackwardSlotBudgetBytes());
    std::size_t slot_floats = 0;
    for (const BackwardPhase& phase : phases) {
      slot_floats = std::max(slot_floats, static_cast<std::size_t>(phase.slot_floats));
    }
    // Every part starts on a cache line.
    auto lines = [](std::size_t floats) {
      constexpr std::size_t kLine = BackwardScratch::kAlign;
      return (floats + kLine - 1) / kLine * kLine;
    };
    const std::size_t scratch_floats = lines(BackwardScratch::Floats(depth, d_pad, dv, dv_pad));
    const std::size_t dsum_floats =
        lines(static_cast<std::size_t>(p.q.shape[0] * p.heads_q * p.q.shape[1]));
    const int threads = p.num_threads;
    float* workspace = CachedWorkspace<BackwardWorkspaceTag>(
        lines(slot_floats) + dsum_floats + scratch_floats * threads);
    if (workspace == nullptr) {
      return Status(StatusCode::kResourceExhausted, "backward: workspace allocation failed");
    }
    float* dsum = workspace + lines(slot_floats);
    float* scratch = dsum + dsum_floats;
    const BackwardContext ctx{&p, dsum, workspace, d_pad, dv_pad};
    const std::int64_t q_rows = p.dq.shape[0] * p.dq.shape[1];
    const std::int64_t k_rows = p.dk.shape[0] * p.dk.shape[1];

    // Flattened index spaces, so that each step is one loop and one barrier
    // whatever the number of sequences and tasks: the valid query rows of
    // every sequence (for D), and per phase the (task, head, row) triples
    // of the dQ reductions.
    std::vector<std::int64_t> row_starts{0};
    for (std::int64_t s = 0; s < p.num_seqs; ++s) {
      row_starts.push_back(row_starts.back() + p.Seq(s).q_len);
    }
    std::vector<std::vector<std::int64_t>> reduce_starts(phases.size());
    for (std::size_t i = 0; i < phases.size(); ++i) {
      reduce_starts[i].push_back(0);
      for (const BackwardTask& task : phases[i].tasks) {
        reduce_starts[i].push_back(reduce_starts[i].back() +
                                   (task.row_end - task.row_begin) * p.group_size());
      }
    }

#pragma omp parallel num_threads(threads)
    {
      const BackwardScratch sc(scratch + scratch_floats * omp_get_thread_num(), depth, d_pad, dv,
                               dv_pad);
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < q_rows; ++r) ClearRow(p.dq, r);
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < k_rows; ++r) {
        ClearRow(p.dk, r);
        ClearRow(p.dv, r);
      }
#pragma omp for schedule(static)
      for (std::int64_t at = 0; at < row_starts.back(); ++at) {
        const auto s = std::upper_bound(row_starts.begin(), row_starts.end(), at) -
                       row_starts.begin() - 1;
        RowDots(p, p.Seq(s), at - row_starts[static_cast<std::size_t>(s)], dsum);
      }
      for (const BackwardPhase& phase : phases) {
        const std::int64_t items = static_cast<std::int64_t>(phase.items.size());
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t i = 0; i < items; ++i) {
          const BackwardItem& item = phase.items[i];
          RunBackwardItem(ctx, phase.tasks[item.task], item.chunk, sc);
        }
        const std::vector<std::int64_t>& starts = reduce_starts[&phase - phases.data()];
#pragma omp for schedule(static)
        for (std::int64_t at = 0; at < starts.back(); ++at) {
          const auto t = std::upper_bound(starts.begin(), starts.end(), at) - starts.begin() - 1;
          const BackwardTask& task = phase.tasks[static_cast<std::size_t>(t)];
          const std::int64_t local = at - starts[static_cast<std::size_t>(t)];
          const std::int64_t rows = task.row_end - task.row_begin;
          ReduceDq(ctx, task, local / rows, task.row_begin + local % rows);
        }
      }
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kResourceExhausted, "backward: workspace allocation failed");
  }
  return Status::Ok();
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace salience::simd {

HWY_EXPORT(BackwardImpl);

namespace {
std::atomic<std::int64_t> slot_budget_bytes{kBackwardSlotBudgetBytes};
}  // namespace

std::int64_t BackwardSlotBudgetBytes() { return slot_budget_bytes.load(); }

ScopedBackwardSlotBudget::ScopedBackwardSlotBudget(std::int64_t bytes)
    : previous_(slot_budget_bytes.exchange(bytes)) {}

ScopedBackwardSlotBudget::~ScopedBackwardSlotBudget() { slot_budget_bytes.store(previous_); }

Status Backward(const core::Problem& p) { return HWY_DYNAMIC_DISPATCH(BackwardImpl)(p); }

}  // namespace salience::simd
#endif  // HWY_ONCE
