// The validated form of one decode call (salience/decode.h). It wraps a
// core::Problem, so that "which keys a query row sees" (Problem::Keys) and
// the score modifiers (ModifyScore) have one definition for prefill and
// decode: the Problem's seqlens_k are the sequences' total key counts
// (cached + appended), its q/out/lse are the caller's. What the Problem does
// not describe is where key j lives: that is the cache's addressing below.
#pragma once

#include <cstdint>
#include <vector>

#include "core/problem.h"
#include "salience/decode.h"

namespace salience::core {

struct DecodeProblem {
  Problem attn;  // attn.k / attn.v are unused: keys live in the cache
  KvCache cache;
  bool paged = false;
  // Keys per page: the paged cache's page_size, or a contiguous cache's
  // capacity (one "page" per sequence, page id = the batch index).
  std::int64_t page_size = 0;
  std::int64_t seqlen_new = 0;  // rows of k_new / v_new (0: no append)
  // Keys per sequence, seqlens[b] + seqlen_new - Start(b);
  // attn.options.seqlens_k points here, so a DecodeProblem is filled in place
  // and never copied.
  std::vector<std::int32_t> k_lens;

  DecodeProblem() = default;
  DecodeProblem(const DecodeProblem&) = delete;
  DecodeProblem& operator=(const DecodeProblem&) = delete;

  // The cache position of key 0 of sequence b (its left padding).
  std::int64_t Start(std::int64_t b) const {
    return cache.leftpad.empty() ? 0 : cache.leftpad[b];
  }

  // The page (index on the cache's first axis) holding cache position t of
  // sequence b (key t - Start(b)).
  std::int64_t Page(std::int64_t b, std::int64_t t) const {
    if (!paged) return b;
    const BlockTable& table = cache.block_table;
    return table.data[b * table.row_stride + t / page_size];
  }

  // Element offsets of key j of sequence b (cache position Start(b) + j),
  // kv head g, in cache.k / cache.v.
  std::int64_t KeyOffset(std::int64_t b, std::int64_t j, std::int64_t g) const {
    const std::int64_t t = Start(b) + j;
    return cache.k.Offset(Page(b, t), t % page_size, g, 0);
  }
  std::int64_t ValueOffset(std::int64_t b, std::int64_t j,
                           std::int64_t g) const {
    const std::int64_t t = Start(b) + j;
    return cache.v.Offset(Page(b, t), t % page_size, g, 0);
  }
};

}  // namespace salience::core
