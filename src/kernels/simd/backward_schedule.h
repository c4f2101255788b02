// Work planning for the fused backward, independent of the SIMD target.
//
// A work item is one chunk of keys (kBackwardChunkKeys) of one (sequence,
// kv head) pair against a segment of that sequence's query rows, for every
// query head of the GQA group. The item owns its keys: it accumulates their
// dK and dV itself. A query row's dQ sums over every chunk the row sees, so
// each item writes its share into a slot of its own, and a reduction after
// the phase adds a row's slots in chunk order. Slots are bounded by a byte
// budget; a sequence too long for it is cut into query segments run in
// successive phases, which add their dK and dV shares in segment order.
// Which sums a result is made of, and in which order, depends on the shape
// alone, never on the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.h"

namespace salience::simd {

// Keys per chunk: a multiple of every target's kv block. Longer chunks mean
// fewer dQ slots to write and reduce and fewer reloads of each query tile;
// shorter ones keep the chunk's packed K (twice), V and dK/dV accumulators
// (2.5 KiB a key at head_dim 128) nearer L2. Measured on Zen 5 (1 MiB L2),
// one thread, N = 2048: 512 keys ran 5-12% faster than 256 and than 1024.
inline constexpr std::int64_t kBackwardChunkKeys = 512;

// The query rows [row_begin, row_end) of one (sequence, kv head) pair, whose
// dQ slots start at slot_offset floats into the phase's slot buffer, laid
// out [chunk][head in group][slot_rows][d_pad]. slot_rows rounds the rows up
// to whole micro row groups, so a tile accumulates its dQ in place.
struct BackwardTask {
  std::int64_t seq;
  std::int64_t kv_head;
  std::int64_t row_begin;
  std::int64_t row_end;
  std::int64_t slot_rows;
  std::int64_t chunks;  // key chunks of the sequence
  std::int64_t slot_offset;
};

struct BackwardItem {
  std::int32_t task;
  std::int32_t chunk;
  std::int64_t cost;  // (query tile, kv block) pairs visited
};

struct BackwardPhase {
  std::vector<BackwardTask> tasks;
  std::vector<BackwardItem> items;
  std::int64_t slot_floats = 0;
};

// Plans the phases: dQ slots of a phase fit `budget_bytes` (a task takes at
// least one query tile), items largest first. Chunks no query tile of a task
// sees get no item (their keys keep dK = dV = 0 from the caller's clear).
std::vector<BackwardPhase> PlanBackward(const core::Problem& p,
                                        std::int64_t q_tile_rows,
                                        std::int64_t micro_rows,
                                        std::int64_t kv_block,
                                        std::int64_t d_pad,
                                        std::int64_t budget_bytes);

}  // namespace salience::simd
