// Dispatch boundary of the fused forward: plans phases, allocates the
// workspace, runs packing and work items on OpenMP threads, and picks the SIMD
// target at run time.
#include "kernels/simd/forward.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <new>

#include "core/problem.h"
#include "kernels/simd/schedule.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/forward.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/simd/forward-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// Finds the piece that owns workspace block `block` (pieces are in
// pack_offset order).
inline std::size_t PieceOfBlock(const Phase& phase, std::int64_t block) {
  const auto it = std::upper_bound(
      phase.pieces.begin(), phase.pieces.end(), block,
      [](std::int64_t b, const Piece& piece) { return b < piece.pack_offset; });
  return static_cast<std::size_t>(it - phase.pieces.begin()) - 1;
}

// The calling thread's workspace, kept between calls: a forward at a given
// shape then touches no fresh pages (at N = 1024 the page faults of a new
// 8 MiB workspace cost a tenth of the call). Grows to the largest request;
// each call bounds it by the pack budget plus per-thread tiles.
inline float* CachedWorkspace(std::size_t floats) {
  static thread_local hwy::AlignedFreeUniquePtr<float[]> buffer;
  static thread_local std::size_t capacity = 0;
  if (floats > capacity) {
    buffer.reset();
    capacity = 0;
    buffer = hwy::AllocateAligned<float>(floats);
    if (!buffer) return nullptr;
    capacity = floats;
  }
  return buffer.get();
}

Status ForwardImpl(const core::Problem& p) {
  constexpr std::size_t kRows = TileTraits::kQTileRows;
  constexpr std::size_t kBlock = TileTraits::kKvBlock;
  constexpr std::size_t N = TileTraits::kLanes;
  const std::size_t depth = static_cast<std::size_t>(p.head_dim);
  const std::size_t dv_pad = (static_cast<std::size_t>(p.head_dim_v) + N - 1) / N * N;
  const TileShape tile{static_cast<std::int64_t>(kRows), static_cast<std::int64_t>(kBlock),
                       static_cast<std::int64_t>((depth + dv_pad) * kBlock * sizeof(float))};
  try {
    const std::vector<Phase> phases = PlanPhases(p, tile, kPackBudgetBytes);
    std::int64_t max_blocks = 1;
    bool carries = false;
    for (const Phase& phase : phases) {
      max_blocks = std::max(max_blocks, phase.pack_blocks);
      for (const Piece& piece : phase.pieces) carries |= !(piece.first_chunk && piece.last_chunk);
    }
    const int threads = p.num_threads;
    // q_tile, s_tile, o_tile, row_max, row_sum, alpha, hidden (bytes).
    const std::size_t scratch_floats = kRows * (depth + 2 * kBlock + dv_pad + N + 2);
    const std::size_t packed_floats =
        PackedKv::Floats(static_cast<std::size_t>(max_blocks), depth, dv_pad);
    float* workspace = CachedWorkspace(packed_floats + scratch_floats * threads);
    if (workspace == nullptr) {
      return Status(StatusCode::kResourceExhausted, "forward: workspace allocation failed");
    }
    PackedKv packed(workspace, static_cast<std::size_t>(max_blocks), depth, dv_pad);
    float* scratch = workspace + packed_floats;
    CarriedState state;
    if (carries) {
      const std::size_t rows = static_cast<std::size_t>(p.q.shape[0] * p.q.shape[1] * p.heads_q);
      state.row_max.assign(rows, -std::numeric_limits<float>::infinity());
      state.row_sum.assign(rows, 0.0f);
    }
    const ItemContext ctx{&p, &packed, &state, dv_pad};

#pragma omp parallel num_threads(threads)
    {
      float* base = scratch + scratch_floats * omp_get_thread_num();
      const Scratch sc{base,
                       base + kRows * depth,
                       base + kRows * (depth + kBlock),
                       base + kRows * (depth + kBlock + dv_pad),
                       base + kRows * (depth + kBlock + dv_pad + 1),
                       base + kRows * (depth + kBlock + dv_pad + 1 + N),
                       reinterpret_cast<std::uint8_t*>(
                           base + kRows * (depth + kBlock + dv_pad + 2 + N))};
      for (const Phase& phase : phases) {
#pragma omp for schedule(dynamic, 4)
        for (std::int64_t block = 0; block < phase.pack_blocks; ++block) {
          const Piece& piece = phase.pieces[PieceOfBlock(phase, block)];
          PackBlock(p, piece, block - piece.pack_offset, dv_pad, block, &packed);
        }
        const std::int64_t items = static_cast<std::int64_t>(phase.items.size());
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t i = 0; i < items; ++i) {
          const WorkItem& item = phase.items[i];
          RunItem(ctx, phase.pieces[item.piece], item, sc);
        }
      }
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kResourceExhausted, "forward: workspace allocation failed");
  }
  return Status::Ok();
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace salience::simd {

HWY_EXPORT(ForwardImpl);

namespace {

// Rows of out that no query row of any sequence owns (padding past
// seqlens_q, the tail after the last packed sequence): out = 0, lse = -inf.
void ClearUnownedRows(const core::Problem& p) {
  auto* out = static_cast<float*>(p.out.data);
  auto* lse = p.lse != nullptr ? static_cast<float*>(p.lse->data) : nullptr;
  auto clear = [&](std::int64_t b, std::int64_t row) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t c = 0; c < p.head_dim_v; ++c) out[p.out.Offset(b, row, h, c)] = 0.0f;
      if (lse != nullptr) {
        lse[p.lse->Offset(b, h, row)] = -std::numeric_limits<float>::infinity();
      }
    }
  };
  if (p.varlen) {
    for (std::int64_t row = p.Seq(p.num_seqs - 1).q_begin + p.Seq(p.num_seqs - 1).q_len;
         row < p.q.shape[1]; ++row) {
      clear(0, row);
    }
    return;
  }
  for (std::int64_t s = 0; s < p.num_seqs; ++s) {
    const core::SeqSpan seq = p.Seq(s);
    for (std::int64_t row = seq.q_len; row < seq.q_rows; ++row) clear(s, row);
  }
}

}  // namespace

Status Forward(const core::Problem& p) {
  if (p.num_seqs == 0) return Status::Ok();
  ClearUnownedRows(p);
  return HWY_DYNAMIC_DISPATCH(ForwardImpl)(p);
}

std::vector<std::int64_t> RunnableTargets() {
  std::vector<std::int64_t> targets;
  const std::int64_t runnable = hwy::SupportedTargets() & HWY_TARGETS;
  for (std::int64_t bits = runnable; bits != 0; bits &= bits - 1) {
    targets.push_back(bits & -bits);  // lowest bit first = best target first
  }
  return targets;
}

const char* TargetName(std::int64_t target) { return hwy::TargetName(target); }

std::int64_t CurrentTarget() {
  // The best runnable target is the one dynamic dispatch picks.
  const std::int64_t runnable = hwy::SupportedTargets() & HWY_TARGETS;
  return runnable & -runnable;
}

ScopedTarget::ScopedTarget(std::int64_t target) {
  hwy::SetSupportedTargetsForTest(target);
}

ScopedTarget::~ScopedTarget() { hwy::SetSupportedTargetsForTest(0); }

}  // namespace salience::simd
#endif  // HWY_ONCE
