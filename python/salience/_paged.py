"""flash_attn_varlen_func with block_table: packed queries against a paged
KV cache (how prefix caching runs a prefill).

flash-attn's semantics: q [total_q, nheads, headdim] packs the sequences'
queries by cu_seqlens_q; k and v are the cache's pages [num_blocks,
page_block_size, nheads_k, headdim]; sequence b's keys are its first
cu_seqlens_k[b + 1] - cu_seqlens_k[b] cache positions, position t in page
block_table[b][t / page_block_size]; causal and windows are aligned
bottom-right per sequence.

It runs on the decode path (salience/decode.h), which reads the pages in
place and takes any number of query rows per sequence, all aligned to the
end of the sequence's keys. When every sequence has the same number of
queries (decode steps, equal chunks), the packed rows are viewed as
[num_seqs, seqlen_q, ...] and one call serves the batch; otherwise each
sequence is one call on its rows' views. Nothing is copied either way.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from salience import _args, _arrays, _autograd, _kvcache, _salience
from salience._attention import get_num_threads


def _rows(x: Any, count: int, length: int) -> Any:
    """The first count * length rows of packed x as [count, length, ...]
    (a view: splitting the first axis never needs a copy)."""
    head = x[:count * length]
    if _arrays.is_torch(x):
        return head.unflatten(0, (count, length))
    return head.reshape((count, length) + tuple(x.shape[1:]))


def _lengths(name: str, cu: np.ndarray) -> np.ndarray:
    if cu[0] != 0:
        raise ValueError(f"{name}[0]: expected 0, got {cu[0]}")
    lengths = np.diff(cu.astype(np.int64))
    bad = np.flatnonzero(lengths < 0)
    if bad.size:
        s = int(bad[0]) + 1
        raise ValueError(f"{name}[{s}]: expected >= {cu[s - 1]} ({name}[{s - 1}], "
                         f"non-decreasing), got {cu[s]}")
    return lengths


def varlen_paged(q: Any, k_cache: Any, v_cache: Any, cu_q: np.ndarray, cu_k: np.ndarray,
                 max_seqlen_k: int, block_table: Any, dropout_p: float,
                 softmax_scale: Optional[float], causal: bool, window: Tuple[int, int],
                 softcap: float, alibi_slopes: Any, return_lse: bool) -> Tuple[Any, Any]:
    """(out [total_q, nheads, headdim_v], lse [nheads, total_q] or None);
    rows past cu_seqlens_q[-1] give out 0 and lse -inf."""
    _kvcache.check_cache("k", k_cache)
    _kvcache.check_cache("v", v_cache)
    if dropout_p != 0.0:
        raise ValueError(f"dropout_p: expected 0 with block_table (a paged cache is read "
                         f"by the inference path), got {dropout_p}")
    table = _args.index_array("block_table", block_table, 2,
                              "int32 [batch, max_blocks_per_seq]")
    q_lens, k_lens = _lengths("cu_seqlens_q", cu_q), _lengths("cu_seqlens_k", cu_k)
    num_seqs = q_lens.size
    if cu_k.size != cu_q.size:
        raise ValueError(f"cu_seqlens_k: expected {cu_q.size} entries (like cu_seqlens_q), "
                         f"got {cu_k.size}")
    if cu_q[-1] > q.shape[0]:
        raise ValueError(f"cu_seqlens_q[{num_seqs}] (total rows): expected <= {q.shape[0]} "
                         f"(q.shape[0]), got {cu_q[-1]}")
    if table.shape[0] != num_seqs:
        raise ValueError(f"block_table: expected {num_seqs} rows (one per sequence of "
                         f"cu_seqlens), got {table.shape[0]}")
    capacity = table.shape[1] * k_cache.shape[1]
    too_long = np.flatnonzero(k_lens > capacity)
    if too_long.size:
        s = int(too_long[0])
        raise ValueError(f"cu_seqlens_k[{s + 1}] - cu_seqlens_k[{s}]: expected <= {capacity} "
                         f"(block_table.shape[1] * page_block_size), got {k_lens[s]}")
    # The decode calls may see one sequence's row of the table at a time, so
    # the pages are checked here, where an error can name the whole table's
    # entry: every page a sequence reads must exist.
    pages_read = -(-k_lens // k_cache.shape[1])
    read = np.arange(table.shape[1])[None, :] < pages_read[:, None]
    bad = np.argwhere(read & ((table < 0) | (table >= k_cache.shape[0])))
    if bad.size:
        s, page = (int(i) for i in bad[0])
        raise ValueError(f"block_table[{s}][{page}]: expected a page id in [0, "
                         f"{k_cache.shape[0]}) (k.shape[0], num_blocks), got {table[s, page]}")
    left, right = (-1 if w >= max_seqlen_k else w for w in window)
    slopes = _args.float32_vector("alibi_slopes", alibi_slopes)
    per_seq_slopes = slopes is not None and slopes.size == num_seqs * q.shape[1] != q.shape[1]
    total_q, heads_q, head_dim_v = q.shape[0], q.shape[1], v_cache.shape[3]
    k_lengths = k_lens.astype(np.int32)

    def decode(q4: Any, out4: Any, lse3: Any, rows: slice) -> None:
        _salience.decode(
            _arrays.for_kernel(q4), _arrays.for_kernel(k_cache), _arrays.for_kernel(v_cache),
            out4, cache_seqlens=k_lengths[rows], lse=lse3, block_table=table[rows],
            scale=softmax_scale, causal="bottom_right" if causal else "none",
            window_left=left, window_right=right,
            alibi_slopes=None if slopes is None else (
                slopes.reshape(num_seqs, heads_q)[rows].reshape(-1) if per_seq_slopes
                else slopes),
            softcap=softcap, num_threads=get_num_threads())

    def run() -> Tuple[Any, ...]:
        out = _arrays.empty_like_dtype(q, (total_q, heads_q, head_dim_v))
        out[int(cu_q[-1]):] = 0
        lse = _arrays.empty_float32(q, (heads_q, total_q))
        lse[:, int(cu_q[-1]):] = -np.inf
        if num_seqs and (q_lens == q_lens[0]).all():
            length = int(q_lens[0])
            if length:
                lse3 = _rows(lse.swapaxes(0, 1), num_seqs, length).swapaxes(1, 2)
                decode(_rows(q, num_seqs, length), _rows(out, num_seqs, length), lse3,
                       slice(0, num_seqs))
        else:
            for s in range(num_seqs):
                begin, end = int(cu_q[s]), int(cu_q[s + 1])
                if end > begin:
                    decode(q[None, begin:end], out[None, begin:end], lse[None, :, begin:end],
                           slice(s, s + 1))
        return out, lse

    out, lse = _autograd.inference_only("flash_attn_varlen_func with block_table", (q,), run)
    return out, lse if return_lse else None
