// The decode kernel (attention of a few new query rows to a KV cache), run
// on OpenMP threads and dispatched at run time to the best SIMD target.
//
// Work is planned before dispatch, from the lengths and fixed constants
// only (never from the thread count), so results are bitwise identical
// across runs and thread counts:
//   - the rows of a sequence are the query heads x new queries; the rows of
//     one kv head's group, ordered r = i * group_size + head_in_group, share
//     each pass over that head's keys;
//   - an item takes several kv heads at once when their rows are few (the
//     usual decode step). Where a key's heads lie back to back (flash-attn's
//     [batch, seq, heads, dim], paged caches) it takes all it can, so it
//     reads each key's [heads_kv, head_dim] row of the cache front to back;
//     where they do not (torch's [batch, heads, seq, dim]) it takes at most
//     kHeadMajorHeads, each of which it streams front to back;
//   - a sequence's visible keys are cut into splits at multiples of
//     kSplitKeys; each split is an item that writes a normalized partial
//     output and its lse, merged afterwards in split order (merge_states.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/decode_problem.h"

namespace salience::simd {

// Keys per split: long enough that the partial state (rows x head_dim_v)
// written and merged per split costs little next to reading the split's
// keys, short enough that one long sequence spreads over many threads
// (32k keys: 16 splits).
inline constexpr std::int64_t kSplitKeys = 2048;
// Query rows one item holds: its output tile (rows x head_dim_v fp32) and
// score tile stay in L2 (128 x 128 x 4 B = 64 KiB at head_dim_v 128).
inline constexpr std::int64_t kDecodeRowBudget = 128;
// Kv heads per item in a head-major cache, where each head of an item is a
// pair of streams (K and V) of its own. Measured on Zen 5 (B=1, heads
// 32/8, D=128, 32k tokens, one thread, GB/s fp32 / bf16 / 16 ragged paged
// bf16): all 8 heads 21.4 / 22.0 / 16.7, 4 heads 24.4 / 24.6 / 20.6,
// 2 heads 25.7 / 26.1 / 26.2, 1 head 25.3 / 24.4 / 21.8. One head pays the
// softmax step and the key offsets of a block for 4 rows alone; more heads
// are more streams than the hardware prefetchers follow.
inline constexpr std::int64_t kHeadMajorHeads = 2;

// A forward call (AttentionForward) runs on the decode kernel when its query
// rows per kv head (group size x query length) are at most kDecodeRouteRows,
// or at most kDecodeRouteRowsLong with kDecodeRouteLongKeys keys or more.
// Measured on Zen 5, one and two threads, forward time / decode time: 16
// rows 1.3-2.6x, 64 rows with 2048 or more keys 1.15-1.5x, but 0.8-0.95x
// with 256 keys, 128 rows 0.75-1.1x (docs/design.md).
inline constexpr std::int64_t kDecodeRouteRows = 16;
inline constexpr std::int64_t kDecodeRouteRowsLong = 64;
inline constexpr std::int64_t kDecodeRouteLongKeys = 1024;

struct DecodeItem {
  std::int64_t seq;
  std::int64_t head_begin, head_end;  // kv heads
  std::int64_t row_begin, row_end;    // rows of each head's group
  std::int64_t key_begin, key_end;    // the split's keys (may be empty)
  std::int64_t partial;  // first float of its partial state; -1: the only
                         // split, written straight to out and lse
};

// Items [first, first + splits) are the splits of one row set, in key order.
struct DecodeMerge {
  std::int64_t first, splits;
};

struct DecodePlan {
  std::vector<DecodeItem> items;
  std::vector<DecodeMerge> merges;
  std::size_t partial_floats = 0;
};

DecodePlan PlanDecode(const core::DecodeProblem& d);

// Attends with a cache that already holds the appended rows.
Status Decode(const core::DecodeProblem& d);

}  // namespace salience::simd
