"""Decoding against a KV cache, and the merge of attention states.

`with_kvcache` is flash_attn_with_kvcache's engine (flash_attn_interface
keeps the public signature): it maps flash-attn's arguments onto the C++
decode path (salience/decode.h), which reads the cache in place, contiguous
[batch, seqlen_cache, nheads_k, headdim] or paged [num_blocks, page_block_size,
nheads_k, headdim] through block_table, float32, bfloat16 or float16, and
appends k/v into it in place. `merge_attention_states` combines two partial
attention results over disjoint keys (prefix caching, cascades).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from salience import _arrays, _salience
from salience._attention import get_num_threads

_CACHE_DTYPES = {"torch.float32", "float32", "torch.bfloat16", "torch.float16", "float16"}


def _check_cache(name: str, x: Any) -> None:
    _arrays.check_array(name, x)
    if _arrays.dtype_name(x) not in _CACHE_DTYPES:
        raise TypeError(f"{name}.dtype: expected float32, bfloat16 or float16, "
                        f"got {_arrays.dtype_name(x)}")
    if x.ndim != 4:
        raise ValueError(f"{name}: expected 4 axes [batch or num_blocks, seqlen or "
                         f"page_block_size, nheads_k, headdim], got shape {list(x.shape)}")


def _like_cache(name: str, x: Any, cache: Any) -> Any:
    """New rows in the cache's dtype, as the cache stores them."""
    _arrays.check_array(name, x)
    _arrays.check_same_kind((name, "k_cache"), (x, cache))
    if x.dtype == cache.dtype:
        return _arrays.for_kernel(x)
    return x.detach().to(cache.dtype) if _arrays.is_torch(x) else x.astype(cache.dtype)


def _seqlens(cache_seqlens: Any, batch: int, default: int) -> np.ndarray:
    if cache_seqlens is None:
        return np.full(batch, default, dtype=np.int32)
    if isinstance(cache_seqlens, (int, np.integer)):
        return np.full(batch, int(cache_seqlens), dtype=np.int32)
    return _arrays.required_int32_vector("cache_seqlens", cache_seqlens)


def with_kvcache(q: Any, k_cache: Any, v_cache: Any, k: Any, v: Any, cache_seqlens: Any,
                 block_table: Any, softmax_scale: Optional[float], causal: bool,
                 window_size: Tuple[int, int], softcap: float, alibi_slopes: Any,
                 return_softmax_lse: bool) -> Tuple[Any, Optional[Any]]:
    """flash_attn_with_kvcache's semantics; returns (out, lse or None)."""
    _arrays.check_array("q", q)
    _arrays.check_attention_dtype("q", q)
    _check_cache("k_cache", k_cache)
    _check_cache("v_cache", v_cache)
    _arrays.check_same_kind(("q", "k_cache", "v_cache"), (q, k_cache, v_cache))
    if q.ndim != 4:
        raise ValueError(f"q: expected 4 axes [batch, seqlen_q, nheads, headdim], "
                         f"got shape {list(q.shape)}")
    if (k is None) != (v is None):
        raise ValueError("k and v: pass both (new keys and values for the cache) or neither")
    batch, seq_q, heads_q = q.shape[0], q.shape[1], q.shape[2]
    table = None
    if block_table is not None:
        table = np.ascontiguousarray(_arrays._to_numpy("block_table", block_table))
        if table.ndim != 2 or table.dtype.kind not in "iu":
            raise ValueError(f"block_table: expected int32 [batch, max_blocks], "
                             f"got {table.dtype} {list(table.shape)}")
        table = table.astype(np.int32)
        capacity = table.shape[1] * k_cache.shape[1]
    else:
        capacity = k_cache.shape[1]
    # Without cache_seqlens the cache is full (nothing appended) or empty
    # (k/v appended from position 0), as in flash-attn.
    lengths = _seqlens(cache_seqlens, batch, 0 if k is not None else capacity)
    k_new = _like_cache("k", k, k_cache) if k is not None else None
    v_new = _like_cache("v", v, v_cache) if v is not None else None
    out = _arrays.empty_like_dtype(q, (batch, seq_q, heads_q, v_cache.shape[3]))
    lse = _arrays.empty_float32(q, (batch, heads_q, seq_q)) if return_softmax_lse else None
    left, right = window_size
    _salience.decode(
        _arrays.for_kernel(q), k_cache, v_cache, out, cache_seqlens=lengths, lse=lse,
        block_table=table, k_new=k_new, v_new=v_new, scale=softmax_scale,
        causal="bottom_right" if causal else "none", window_left=int(left),
        window_right=int(right),
        alibi_slopes=_arrays.float32_vector("alibi_slopes", alibi_slopes),
        softcap=float(softcap), num_threads=get_num_threads())
    return out, lse


def merge_attention_states(out_a: Any, lse_a: Any, out_b: Any,
                           lse_b: Any) -> Tuple[Any, Any]:
    """Merges two attention results over disjoint key sets A and B into the
    result over A u B: out_* [batch, seqlen, nheads, headdim] and lse_*
    [batch, nheads, seqlen] float32 (flash-attn's layouts), returns (out, lse)
    with lse = log(exp(lse_a) + exp(lse_b)) and out the lse-weighted average,
    exact up to rounding. A side with lse = -inf (no keys) is ignored: the
    result is the other side exactly; both -inf give out 0, lse -inf."""
    names = ("out_a", "lse_a", "out_b", "lse_b")
    arrays = (out_a, lse_a, out_b, lse_b)
    for name, x in zip(names, arrays):
        _arrays.check_array(name, x)
        _arrays.check_float32(name, x)
    _arrays.check_same_kind(names, arrays)
    out = _arrays.empty_float32(out_a, tuple(out_a.shape))
    lse = _arrays.empty_float32(out_a, tuple(lse_a.shape))
    _salience.merge_states(*(_arrays.for_kernel(x) for x in arrays), out, lse=lse)
    return out, lse
