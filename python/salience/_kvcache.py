"""Decoding against a KV cache, and the merge of attention states.

`with_kvcache` is flash_attn_with_kvcache's engine (flash_attn_interface
keeps the public signature): it maps flash-attn's arguments onto the C++
decode path (salience/decode.h), which reads the cache in place, contiguous
[batch, seqlen_cache, nheads_k, headdim] or paged [num_blocks, page_block_size,
nheads_k, headdim] through block_table, float32, bfloat16 or float16, and
appends k/v into it in place. flash-attn's extras map so:

- cache_batch_idx (sequence b reads cache row cache_batch_idx[b]): the
  contiguous cache is read as pages of one whole row each, with the page
  table cache_batch_idx[:, None]; nothing is copied.
- cache_leftpad (sequence b's keys start at that cache position): the
  decode path's KvCache::leftpad.
- rotary_cos / rotary_sin: q and the new keys are rotated before the call
  (salience._rotary), exactly as flash-attn's kernel rotates them.

`merge_attention_states` combines two partial attention results over
disjoint keys (prefix caching, cascades). Neither has a backward: under
autograd their results raise if differentiated (salience._autograd).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from salience import _args, _arrays, _autograd, _rotary, _salience
from salience._attention import get_num_threads

_CACHE_DTYPES = {"torch.float32", "float32", "torch.bfloat16", "torch.float16", "float16"}


def check_cache(name: str, x: Any) -> None:
    _arrays.check_array(name, x)
    if _arrays.dtype_name(x) not in _CACHE_DTYPES:
        raise TypeError(f"{name}.dtype: expected float32, bfloat16 or float16, "
                        f"got {_arrays.dtype_name(x)}")
    if x.ndim != 4:
        raise ValueError(f"{name}: expected 4 axes [batch or num_blocks, seqlen or "
                         f"page_block_size, nheads_k, headdim], got shape {list(x.shape)}")


def _like_cache(x: Any, cache: Any) -> Any:
    """New rows in the cache's dtype, as the cache stores them."""
    if x.dtype == cache.dtype:
        return _arrays.for_kernel(x)
    if _arrays.is_torch(x):
        return _arrays.resolved(x.detach()).to(cache.dtype)
    return x.astype(cache.dtype)


def _seqlens(cache_seqlens: Any, batch: int, default: int) -> np.ndarray:
    if cache_seqlens is None:
        lengths = np.full(batch, default, dtype=np.int32)
    elif _arrays.is_array(cache_seqlens) or isinstance(cache_seqlens, (list, tuple)):
        lengths = _args.index_array("cache_seqlens", cache_seqlens)
    else:
        value = _args.integer("cache_seqlens", cache_seqlens, 0, _args.INT32_MAX)
        lengths = np.full(batch, value, dtype=np.int32)
    return lengths


def _batch_rows(cache_batch_idx: Any, batch: int, rows: int, appending: bool) -> np.ndarray:
    """cache_batch_idx as a one-page-per-sequence block table [batch, 1]."""
    index = _args.index_array("cache_batch_idx", cache_batch_idx)
    if index.shape[0] != batch:
        raise ValueError(f"cache_batch_idx: expected {batch} entries (q.shape[0], batch), "
                         f"got {index.shape[0]}")
    bad = np.flatnonzero((index < 0) | (index >= rows))
    if bad.size:
        b = int(bad[0])
        raise ValueError(f"cache_batch_idx[{b}]: expected a row of k_cache in [0, {rows}), "
                         f"got {index[b]}")
    if appending and np.unique(index).size != batch:
        raise ValueError("cache_batch_idx: expected distinct rows when k and v are appended "
                         "(two sequences would write one cache row)")
    return np.ascontiguousarray(index[:, None])


def check_written_cache(name: str, cache: Any) -> None:
    """A cache that k/v are appended to: written in place, so it must be
    writable as it is (no copy) and outside autograd, as torch requires of
    an in-place write."""
    _arrays.check_writable(name, cache)
    _arrays.check_grad_for_write(name, cache)


def _rotate(q: Any, k: Any, cos: Any, sin: Any, lengths: np.ndarray, per_row: bool,
            interleaved: bool, cache_dtype: Any) -> Tuple[Any, Any]:
    """q and k rotated at flash-attn's positions: key t of sequence b at
    cache_seqlens[b] + t; query i at cache_seqlens[b] + i when causal or
    local, else every query at cache_seqlens[b]."""
    for name, x in (("rotary_cos", cos), ("rotary_sin", sin)):
        if x is None:
            raise ValueError(f"{name}: expected an array with "
                             f"{'rotary_sin' if name == 'rotary_cos' else 'rotary_cos'}, got None")
        _arrays.check_array(name, x)
        if _arrays.dtype_name(x).replace("torch.", "") not in ("float32", "float16",
                                                               "bfloat16", "float64"):
            raise TypeError(f"{name}.dtype: expected a floating type, got {_arrays.dtype_name(x)}")
        if x.ndim != 2:
            raise ValueError(f"{name}: expected 2 axes [seqlen_ro, rotary_dim / 2], "
                             f"got shape {list(x.shape)}")
    if tuple(sin.shape) != tuple(cos.shape):
        raise ValueError(f"rotary_sin: expected rotary_cos's shape {list(cos.shape)}, "
                         f"got {list(sin.shape)}")
    if k is None:
        raise ValueError("rotary_cos: rotary embedding needs k and v (the new keys are "
                         "rotated as they are appended), as in flash-attn")
    if 2 * cos.shape[1] > q.shape[3]:
        raise ValueError(f"rotary_cos.shape[1]: expected <= {q.shape[3] // 2} (headdim / 2), "
                         f"got {cos.shape[1]}")
    seq_q, seq_new = q.shape[1], k.shape[1]
    q_positions = lengths[:, None].astype(np.int64) + (
        np.arange(seq_q) if per_row else np.zeros(seq_q, dtype=np.int64))
    k_positions = lengths[:, None].astype(np.int64) + np.arange(seq_new)
    needed = max(int(q_positions.max(initial=-1)), int(k_positions.max(initial=-1))) + 1
    if needed > cos.shape[0]:
        raise ValueError(f"rotary_cos: expected at least {needed} rows (the positions "
                         f"cache_seqlens + 0 .. {'seqlen_q' if per_row else 'seqlen_new'} - 1 "
                         f"are rotated), got {cos.shape[0]}")
    return (_rotary.rotate(q, cos, sin, q_positions, interleaved, q.dtype),
            _rotary.rotate(k, cos, sin, k_positions, interleaved, cache_dtype))


def with_kvcache(q: Any, k_cache: Any, v_cache: Any, k: Any, v: Any, rotary_cos: Any,
                 rotary_sin: Any, cache_seqlens: Any, cache_batch_idx: Any,
                 cache_leftpad: Any, block_table: Any, softmax_scale: Any, causal: Any,
                 window_size: Any, softcap: Any, rotary_interleaved: Any, alibi_slopes: Any,
                 num_splits: Any, return_softmax_lse: Any) -> Tuple[Any, Optional[Any]]:
    """flash_attn_with_kvcache's semantics; returns (out, lse or None)."""
    names = ("q", "k_cache", "v_cache", "k", "v", "rotary_cos", "rotary_sin", "cache_seqlens",
             "cache_batch_idx", "cache_leftpad", "block_table", "alibi_slopes")
    _arrays.check_array("q", q)
    _arrays.check_attention_dtype("q", q)
    check_cache("k_cache", k_cache)
    check_cache("v_cache", v_cache)
    _arrays.check_same_kind(names, (q, k_cache, v_cache, k, v, rotary_cos, rotary_sin,
                                    cache_seqlens, cache_batch_idx, cache_leftpad,
                                    block_table, alibi_slopes))
    if q.ndim != 4:
        raise ValueError(f"q: expected 4 axes [batch, seqlen_q, nheads, headdim], "
                         f"got shape {list(q.shape)}")
    if (k is None) != (v is None):
        raise ValueError("k and v: pass both (new keys and values for the cache) or neither")
    for name, x in (("k", k), ("v", v)):
        if x is not None:
            _arrays.check_array(name, x)
            _arrays.check_attention_dtype(name, x)
            if x.ndim != 4:
                raise ValueError(f"{name}: expected 4 axes [batch, seqlen_new, nheads_k, "
                                 f"headdim], got shape {list(x.shape)}")
    causal = _args.boolean("causal", causal)
    left, right = _args.window(window_size)
    softcap = _args.real("softcap", softcap)
    scale = _args.optional_real("softmax_scale", softmax_scale, finite=True)
    interleaved = _args.boolean("rotary_interleaved", rotary_interleaved)
    return_lse = _args.boolean("return_softmax_lse", return_softmax_lse)
    _args.integer("num_splits", num_splits, 0, _args.INT32_MAX)
    appending = k is not None
    inputs = (q, k, v)  # as given: rotary replaces q and k by new arrays
    batch, seq_q, heads_q = q.shape[0], q.shape[1], q.shape[2]
    table = None
    if block_table is not None:
        if cache_batch_idx is not None:
            raise ValueError("cache_batch_idx: expected None with block_table (the table "
                             "maps each sequence to its pages), as in flash-attn")
        table = _args.index_array("block_table", block_table, 2, "int32 [batch, max_blocks]")
        capacity = table.shape[1] * k_cache.shape[1]
    elif cache_batch_idx is not None:
        table = _batch_rows(cache_batch_idx, batch, k_cache.shape[0], appending)
        capacity = k_cache.shape[1]
    else:
        capacity = k_cache.shape[1]
    # Without cache_seqlens the cache is full (nothing appended) or empty
    # (k/v appended from position 0), as in flash-attn.
    lengths = _seqlens(cache_seqlens, batch, 0 if appending else capacity)
    leftpad = _args.optional_index_array("cache_leftpad", cache_leftpad)
    # flash-attn treats a window that reaches past the whole cache as none.
    left = -1 if left >= capacity else left
    right = -1 if right >= capacity else right
    if rotary_cos is not None or rotary_sin is not None:
        # The positions index rotary_cos before the library checks the lengths.
        if lengths.shape[0] != batch:
            raise ValueError(f"cache_seqlens: expected {batch} entries (q.shape[0], batch), "
                             f"got {lengths.shape[0]}")
        negative = np.flatnonzero(lengths < 0)
        if negative.size:
            b = int(negative[0])
            raise ValueError(f"cache_seqlens[{b}]: expected >= 0, got {lengths[b]}")
        per_row = causal or left >= 0 or right >= 0
        q, k = _rotate(q, k, rotary_cos, rotary_sin, lengths, per_row, interleaved,
                       k_cache.dtype)
    if appending:
        check_written_cache("k_cache", k_cache)
        check_written_cache("v_cache", v_cache)
    k_new = _like_cache(k, k_cache) if appending else None
    v_new = _like_cache(v, v_cache) if appending else None
    slopes = _args.float32_vector("alibi_slopes", alibi_slopes)

    def run() -> Tuple[Any, ...]:
        out = _arrays.empty_like_dtype(q, (batch, seq_q, heads_q, v_cache.shape[3]))
        lse = _arrays.empty_float32(q, (batch, heads_q, seq_q)) if return_lse else None
        _salience.decode(
            _arrays.for_kernel(q), _arrays.for_kernel(k_cache), _arrays.for_kernel(v_cache),
            out, cache_seqlens=lengths, cache_leftpad=leftpad, lse=lse, block_table=table,
            k_new=k_new, v_new=v_new, scale=scale, causal="bottom_right" if causal else "none",
            window_left=left, window_right=right, alibi_slopes=slopes, softcap=softcap,
            num_threads=get_num_threads())
        return (out,) if lse is None else (out, lse)

    try:
        result = _autograd.inference_only("flash_attn_with_kvcache", inputs, run)
    finally:
        if appending:  # the cache may be written before a later check fails
            _arrays.mark_written(k_cache, v_cache)
    return result[0], result[1] if return_lse else None


def merge_attention_states(out_a: Any, lse_a: Any, out_b: Any,
                           lse_b: Any) -> Tuple[Any, Any]:
    """Merges two attention results over disjoint key sets A and B into the
    result over A u B: out_* [batch, seqlen, nheads, headdim] (float32,
    bfloat16 or float16) and lse_* [batch, nheads, seqlen] float32
    (flash-attn's layouts), returns (out in out_a's dtype, lse float32) with
    lse = log(exp(lse_a) + exp(lse_b)) and out the lse-weighted average,
    computed in float32 and rounded once. A side with lse = -inf (no keys)
    is ignored: the result is the other side exactly; both -inf give out 0,
    lse -inf. Not differentiable (a backward through it raises)."""
    names = ("out_a", "lse_a", "out_b", "lse_b")
    arrays = (out_a, lse_a, out_b, lse_b)
    for name, x in zip(names, arrays):
        _arrays.check_array(name, x)
        if name.startswith("lse"):
            _arrays.check_float32(name, x)
        else:
            _arrays.check_attention_dtype(name, x)
    _arrays.check_same_kind(names, arrays)

    def run() -> Tuple[Any, ...]:
        out = _arrays.empty_like_dtype(out_a, tuple(out_a.shape))
        lse = _arrays.empty_float32(out_a, tuple(lse_a.shape))
        _salience.merge_states(*(_arrays.for_kernel(x) for x in arrays), out, lse=lse)
        return out, lse

    out, lse = _autograd.inference_only("merge_attention_states", (out_a, out_b), run)
    return out, lse
