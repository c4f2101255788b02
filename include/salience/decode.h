// salience: decoding against a KV cache (inference), and the merge of
// partial attention states.
//
// A decode step attends a few new query rows per sequence (1..16 in
// practice; any count works) to everything the sequence's cache holds:
//
//   out[b, i, h, :] = sum_j softmax_j(score(b, h, i, j)) * V_b[j, h / G, :]
//
// over the keys j < k_len(b) = cache.seqlens[b] + seqlen_new - leftpad(b),
// where V_b / K_b are sequence b's cached rows from cache position
// leftpad(b) (cache.leftpad[b], default 0: the positions before it are left
// padding, never read) followed by its new rows (k_new / v_new, which are
// first written into the cache at positions seqlens[b] .. seqlens[b] +
// seqlen_new - 1, as flash-attn's flash_attn_with_kvcache does; key j is
// cache position leftpad(b) + j). Scores are attention.h's: scale, softcap,
// ALiBi (bottom-right distance i + k_len - q_len - j), the causal bound and
// the window, with the new queries aligned to the END of the cache
// (Causal::kBottomRight: query i sees keys j <= i + k_len - q_len).
//
// Shapes (logical axes; any non-negative strides, see tensor.h):
//   q         [batch, seq_q, heads_q, head_dim]            fp32, bf16 or fp16
//   out       [batch, seq_q, heads_q, head_dim_v]          fp32, bf16 or fp16
//   lse       [batch, heads_q, seq_q]                      fp32, optional
//   contiguous cache (block_table.data == nullptr):
//     k       [batch, capacity, heads_kv, head_dim]        fp32, bf16 or fp16
//     v       [batch, capacity, heads_kv, head_dim_v]      same dtype as k
//   paged cache (vLLM / flash-attn's block_table):
//     k       [num_pages, page_size, heads_kv, head_dim]
//     v       [num_pages, page_size, heads_kv, head_dim_v]
//     block_table  int32 [batch, max_pages]: cache position t of sequence b
//                  lives in page block_table[b][t / page_size], slot
//                  t % page_size
//   k_new     [batch, seqlen_new, heads_kv, head_dim]      dtype of the cache
//   v_new     [batch, seqlen_new, heads_kv, head_dim_v]    optional (both)
//
//   leftpad   int32 [batch], optional: 0 <= leftpad[b] <= seqlens[b]
//
// Every page a sequence reads or writes must be a valid page id (an invalid
// one is an error, never a read; pages wholly before leftpad[b] are not
// looked at). Each sequence's seqlens[b] + seqlen_new must fit its capacity
// (contiguous: k.shape[1]; paged: max_pages * page_size).
// Sequences must not share a page that an append writes.
//
// q, out and the cache each have a dtype of their own (a bf16 model passes
// bf16 throughout; fp32 queries against a bf16 cache work too). The kernel
// reads q and the cache in place, converting bf16/fp16 elements to fp32 as
// it loads them, computes in fp32 and rounds out once. It shares one pass
// over a kv head's keys between all query heads of its group (decode is
// bound by the bytes of cache read). Long
// caches are split into fixed-size key ranges computed in parallel and
// merged exactly (split-KV); the split points depend only on the lengths, so
// results are bitwise identical across runs and thread counts.
//
// Options honoured: scale, causal, window_left/right, window_align,
// softcap, alibi_slopes (heads_q or batch * heads_q), num_threads. The mask
// tensor, dropout, seqlens_q/seqlens_k and cu_seqlens are rejected: the
// cache's lengths are cache.seqlens.
#pragma once

#include <cstdint>
#include <span>

#include "salience/attention.h"
#include "salience/status.h"
#include "salience/tensor.h"

namespace salience {

// The int32 page table of a paged cache: rows [batch], max_pages columns,
// row r at data + r * row_stride (columns contiguous). data == nullptr means
// the cache is contiguous.
struct BlockTable {
  const std::int32_t* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t max_pages = 0;
  std::int64_t row_stride = 0;  // in elements, >= max_pages
};

struct KvCache {
  TensorView k, v;  // see the shapes above; written when k_new is given
  // Tokens already cached per sequence, [batch], before the append.
  std::span<const std::int32_t> seqlens;
  // First cache position of each sequence's keys, [batch] (flash-attn's
  // cache_leftpad: left-padded prompts); empty: 0 for every sequence.
  std::span<const std::int32_t> leftpad;
  BlockTable block_table;
  // New keys and values to append before attending; data == nullptr (both)
  // appends nothing.
  TensorView k_new, v_new;
};

// Appends cache.k_new / v_new (if any), then attends q to the cache. `lse`
// may be null. A sequence whose rows see no key gets out = 0, lse = -inf.
Status AttentionWithKvCache(const TensorView& q, const KvCache& cache,
                            const TensorView& out,
                            const AttentionOptions& options,
                            const TensorView* lse = nullptr);

// The reference: the same contract (it appends too), computed literally with
// fp64 accumulation. For tests and `salience check`.
Status AttentionWithKvCacheReference(const TensorView& q, const KvCache& cache,
                                     const TensorView& out,
                                     const AttentionOptions& options,
                                     const TensorView* lse = nullptr);

// Merges two attention states over disjoint key sets A and B into the state
// over A u B (prefix caching, cascades, split-KV):
//
//   m   = max(lse_a, lse_b)
//   w_x = exp(lse_x - m)
//   out = (w_a out_a + w_b out_b) / (w_a + w_b),  lse = m + log(w_a + w_b)
//
// exact up to rounding. A side with lse = -inf (no keys) has weight 0 and is
// never read: the result is the other side exactly; both -inf give out = 0,
// lse = -inf (never NaN).
//   out_a, out_b, out  [batch, seq, heads, head_dim]  fp32, bf16 or fp16
//   lse_a, lse_b       [batch, heads, seq]            fp32
//   lse                [batch, heads, seq]            fp32, optional
// Each of out_a, out_b and out has a dtype of its own; the merge reads them
// widened to fp32, computes in fp32 and rounds out once. out may be out_a or
// out_b itself (each element depends only on the same element of the
// inputs); lse likewise.
Status MergeAttentionStates(const TensorView& out_a, const TensorView& lse_a,
                            const TensorView& out_b, const TensorView& lse_b,
                            const TensorView& out,
                            const TensorView* lse = nullptr);

}  // namespace salience
