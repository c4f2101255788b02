// Work planning for the fused forward, independent of the SIMD target.
//
// The keys of every (sequence, kv head) pair are packed once into a shared
// workspace and then read by every query tile and every query head of the
// GQA group. To keep the workspace independent of sequence length, keys are
// packed in chunks that fit a fixed byte budget; a "phase" packs a set of
// chunks, then runs every query tile against them. A query row whose keys
// span several chunks carries its running softmax state (max, sum and the
// unnormalized output) from one phase to the next, in key order.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.h"

namespace salience::simd {

// A chunk of one (sequence, kv head) pair's keys, packed in one phase.
struct Piece {
  std::int64_t seq;
  std::int64_t kv_head;
  std::int64_t key_begin;    // local key index, a multiple of kv_block
  std::int64_t key_end;      // one past the last key of the chunk
  bool first_chunk;          // no state to load
  bool last_chunk;           // finalize: normalize, write out and lse
  std::int64_t pack_offset;  // first kv block's index in the workspace
};

// One query tile of one query head against one piece.
struct WorkItem {
  std::int32_t piece;
  std::int32_t head;
  std::int64_t row_begin;  // local query rows [row_begin, row_end)
  std::int64_t row_end;
  std::int64_t cost;       // kv blocks visited, for largest-first ordering
                           // within a piece
};

struct Phase {
  std::vector<Piece> pieces;
  std::vector<WorkItem> items;
  std::int64_t pack_blocks = 0;  // kv blocks the phase packs
};

struct TileShape {
  std::int64_t q_tile_rows;  // query rows per work item
  std::int64_t kv_block;     // keys per packed block
  std::int64_t block_bytes;  // bytes of one packed K and V block together
};

// Splits the problem into phases whose packed blocks fit `budget_bytes`
// (at least one block per phase). Query tiles that a causal or window mask
// keeps away from a chunk get no work item for it.
std::vector<Phase> PlanPhases(const core::Problem& p, const TileShape& tile,
                              std::int64_t budget_bytes);

// The visible key range of query rows [row_begin, row_end) of `seq`: the
// union of the rows' ranges (they are monotone in the row index).
core::KeyRange TileKeys(const core::Problem& p, const core::SeqSpan& seq,
                        std::int64_t row_begin, std::int64_t row_end);

}  // namespace salience::simd
