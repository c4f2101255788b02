#include "kernels/simd/backward_schedule.h"

#include <algorithm>

#include "kernels/simd/schedule.h"

namespace salience::simd {
namespace {

std::int64_t CeilDiv(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Appends the items of `task` (index task_index in its phase).
void AddItems(const core::Problem& p, const BackwardTask& task,
              std::int32_t task_index, std::int64_t q_tile_rows,
              std::int64_t kv_block, std::vector<BackwardItem>* items) {
  const core::SeqSpan seq = p.Seq(task.seq);
  std::vector<std::int64_t> cost(static_cast<std::size_t>(task.chunks), 0);
  for (std::int64_t row = task.row_begin; row < task.row_end; row += q_tile_rows) {
    const core::KeyRange keys =
        TileKeys(p, seq, row, std::min(task.row_end, row + q_tile_rows));
    if (keys.end <= keys.begin) continue;
    for (std::int64_t c = keys.begin / kBackwardChunkKeys;
         c * kBackwardChunkKeys < keys.end; ++c) {
      const std::int64_t begin = std::max(keys.begin, c * kBackwardChunkKeys);
      const std::int64_t end = std::min(keys.end, (c + 1) * kBackwardChunkKeys);
      cost[static_cast<std::size_t>(c)] += CeilDiv(end, kv_block) - begin / kv_block;
    }
  }
  for (std::int64_t c = 0; c < task.chunks; ++c) {
    const std::int64_t chunk_cost = cost[static_cast<std::size_t>(c)];
    if (chunk_cost == 0) continue;
    items->push_back({task_index, static_cast<std::int32_t>(c),
                      chunk_cost * p.group_size()});
  }
}

}  // namespace

std::vector<BackwardPhase> PlanBackward(const core::Problem& p,
                                        std::int64_t q_tile_rows,
                                        std::int64_t micro_rows,
                                        std::int64_t kv_block,
                                        std::int64_t d_pad,
                                        std::int64_t budget_bytes) {
  const std::int64_t budget_floats = budget_bytes / static_cast<std::int64_t>(sizeof(float));
  std::vector<BackwardPhase> phases(1);
  for (std::int64_t s = 0; s < p.num_seqs; ++s) {
    const core::SeqSpan seq = p.Seq(s);
    if (seq.q_len == 0 || seq.k_len == 0) continue;
    const std::int64_t chunks = CeilDiv(seq.k_len, kBackwardChunkKeys);
    const std::int64_t row_floats = chunks * p.group_size() * d_pad;
    // Whole query tiles per segment, at least one.
    const std::int64_t tiles = std::max<std::int64_t>(1, budget_floats / row_floats / q_tile_rows);
    const std::int64_t segment_rows = tiles * q_tile_rows;
    for (std::int64_t g = 0; g < p.heads_kv; ++g) {
      for (std::int64_t row = 0; row < seq.q_len; row += segment_rows) {
        const std::int64_t row_end = std::min(seq.q_len, row + segment_rows);
        const std::int64_t slot_rows = CeilDiv(row_end - row, micro_rows) * micro_rows;
        const std::int64_t floats = row_floats * slot_rows;
        BackwardPhase* phase = &phases.back();
        // A second segment of the same pair adds to the same dK and dV:
        // it waits for the next phase.
        const bool same_pair = !phase->tasks.empty() && phase->tasks.back().seq == s &&
                               phase->tasks.back().kv_head == g;
        if (!phase->tasks.empty() && (same_pair || phase->slot_floats + floats > budget_floats)) {
          phases.emplace_back();
          phase = &phases.back();
        }
        const BackwardTask task{s, g, row, row_end, slot_rows, chunks, phase->slot_floats};
        phase->slot_floats += floats;
        phase->tasks.push_back(task);
        AddItems(p, task, static_cast<std::int32_t>(phase->tasks.size() - 1), q_tile_rows,
                 kv_block, &phase->items);
      }
    }
  }
  // Largest first, so a phase ends on small items and dynamic scheduling
  // balances the threads. Stable: deterministic.
  for (BackwardPhase& phase : phases) {
    std::stable_sort(phase.items.begin(), phase.items.end(),
                     [](const BackwardItem& a, const BackwardItem& b) { return a.cost > b.cost; });
  }
  return phases;
}

}  // namespace salience::simd
