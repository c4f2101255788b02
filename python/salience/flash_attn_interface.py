"""flash-attn's entry points on the CPU, with flash-attn 2's names, argument
order, layouts and defaults; `from salience.flash_attn_interface import
flash_attn_func` replaces `from flash_attn.flash_attn_interface import ...`.

  q [batch, seqlen_q, nheads, headdim], k/v [batch, seqlen_k, nheads_k, headdim]
  (varlen: [total, nheads, headdim], sequences end to end, cu_seqlens int32)

nheads a multiple of nheads_k (MQA/GQA). causal is aligned bottom-right:
query i sees keys j <= i + seqlen_k - seqlen_q. window_size (left, right)
limits query i to keys [i + seqlen_k - seqlen_q - left, ... + right], -1 for
unbounded. alibi_slopes [nheads] or [batch, nheads] add
-slope * |i + seqlen_k - seqlen_q - j|; softcap > 0 caps the scores with tanh.

Gradients of q, k and v (and so of qkv, kv) flow through torch's autograd;
dropout_p > 0 drops attention weights with a mask keyed by a seed drawn from
torch's default generator (docs/python.md), which the backward regenerates.

Paged KV caches: flash_attn_with_kvcache and flash_attn_varlen_func take
block_table; flash_attn_with_kvcache also rotary_cos/rotary_sin,
cache_batch_idx and cache_leftpad. Neither has a backward (as in flash-attn):
differentiating through them raises NotImplementedError.

Differences from flash-attn on a GPU: float32, bfloat16 and float16 inputs
(fp32 accumulation), torch tensors or NumPy arrays (all of one kind in a
call); any page size; with return_attn_probs=True the third element (the
debugging-only attention probabilities, which flash-attn returns only under
dropout) is None; `deterministic` is accepted and has no effect, as salience
is always deterministic. A row that sees no key gives out = 0 and lse =
-inf, as in flash-attn.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from salience import _args, _arrays, _autograd, _kvcache, _paged
from salience._attention import attend

Array = TypeVar("Array")
Result = Union[Array, Tuple[Array, Array, None]]

__all__ = [
    "flash_attn_func",
    "flash_attn_kvpacked_func",
    "flash_attn_qkvpacked_func",
    "flash_attn_varlen_func",
    "flash_attn_varlen_kvpacked_func",
    "flash_attn_varlen_qkvpacked_func",
    "flash_attn_with_kvcache",
]


def _check_inputs(q: Any, k: Any, v: Any, ndim: int, axes: str, **others: Any) -> None:
    """q, k, v: arrays of an attention dtype with `ndim` axes; they and the
    other array arguments of the call all of one kind."""
    names = ("q", "k", "v")
    for name, x in zip(names, (q, k, v)):
        _arrays.check_array(name, x)
        _arrays.check_attention_dtype(name, x)
    _arrays.check_same_kind(names + tuple(others), (q, k, v) + tuple(others.values()))
    ndims = [x.ndim for x in (q, k, v)]
    if ndims != [ndim] * 3:
        raise ValueError(
            f"q, k, v: expected {ndim} axes {axes} each, got "
            f"q.ndim={ndims[0]}, k.ndim={ndims[1]}, v.ndim={ndims[2]}"
        )


def _unpack(packed: Any, name: str, count: int, axis: int, axes: str) -> Tuple[Any, ...]:
    """Views of the `count` tensors stacked on `axis` of a packed tensor."""
    _arrays.check_array(name, packed)
    ndim = len(axes.split(","))
    if packed.ndim != ndim or packed.shape[axis] != count:
        raise ValueError(f"{name}: expected shape {axes} with {count} on axis {axis}, "
                         f"got {list(packed.shape)}")
    index = (slice(None),) * axis
    return tuple(packed[index + (i,)] for i in range(count))


def _check_max_seqlen(name: str, max_seqlen: Any, cu_seqlens: np.ndarray) -> int:
    """flash-attn sizes its grid by max_seqlen (an int); one too small would
    leave rows uncomputed there, so it is an error here (malformed
    cu_seqlens are the library's to report)."""
    max_seqlen = _args.integer(name, max_seqlen, 0, _args.INT32_MAX)
    lengths = np.diff(cu_seqlens.astype(np.int64))
    if lengths.size and (lengths >= 0).all() and lengths.max() > max_seqlen:
        raise ValueError(f"{name}: expected >= {lengths.max()} (the longest sequence "
                         f"in cu_seqlens), got {max_seqlen}")
    return max_seqlen


def _attend(q: Any, k: Any, v: Any, *, lse_shape: Tuple[int, ...], dropout_p: float,
            softmax_scale: Optional[float], causal: bool, window_size: Sequence[int],
            softcap: float, alibi_slopes: Any, return_lse: bool,
            **sequences: Any) -> Tuple[Any, Any]:
    """Runs on [batch, seq, heads, dim] views; returns (out, lse or None)
    with out shaped like q's views (head_dim of v) and lse as lse_shape."""
    left, right = _args.window(window_size)
    causal = _args.boolean("causal", causal)
    softmax_scale = _args.optional_real("softmax_scale", softmax_scale, finite=True)
    softcap = _args.real("softcap", softcap)
    dropout = _autograd.dropout_options(dropout_p, q)
    out, lse = attend(q, k, v, new_out=lambda: _arrays.empty_like_dtype(
                          q, tuple(q.shape[:-1]) + (v.shape[-1],)),
                      logical_out=lambda out: out, return_lse=return_lse,
                      alibi_slopes=alibi_slopes, scale=softmax_scale,
                      causal="bottom_right" if causal else "none", window_left=left,
                      window_right=right, window_align="bottom_right", softcap=softcap,
                      **dropout, **sequences)
    return out, None if lse is None else lse.reshape(lse_shape)


def flash_attn_func(q: Array, k: Array, v: Array, dropout_p: float = 0.0,
                    softmax_scale: Optional[float] = None, causal: bool = False,
                    window_size: Tuple[int, int] = (-1, -1), softcap: float = 0.0,
                    alibi_slopes: Any = None, deterministic: bool = False,
                    return_attn_probs: bool = False) -> Result[Array]:
    """out [batch, seqlen_q, nheads, headdim_v]; with return_attn_probs,
    (out, softmax_lse [batch, nheads, seqlen_q] float32, None)."""
    _check_inputs(q, k, v, 4, "[batch, seqlen, nheads, headdim]", alibi_slopes=alibi_slopes)
    _args.boolean("deterministic", deterministic)
    return_attn_probs = _args.boolean("return_attn_probs", return_attn_probs)
    batch, seq_q, heads_q = q.shape[:3]  # type: ignore[attr-defined]
    out, lse = _attend(q, k, v, lse_shape=(batch, heads_q, seq_q), dropout_p=dropout_p,
                       softmax_scale=softmax_scale, causal=causal, window_size=window_size,
                       softcap=softcap, alibi_slopes=alibi_slopes,
                       return_lse=return_attn_probs)
    return (out, lse, None) if return_attn_probs else out


def flash_attn_varlen_func(q: Array, k: Array, v: Array, cu_seqlens_q: Any,
                           cu_seqlens_k: Any, max_seqlen_q: int, max_seqlen_k: int,
                           dropout_p: float = 0.0, softmax_scale: Optional[float] = None,
                           causal: bool = False, window_size: Tuple[int, int] = (-1, -1),
                           softcap: float = 0.0, alibi_slopes: Any = None,
                           deterministic: bool = False, return_attn_probs: bool = False,
                           block_table: Any = None) -> Result[Array]:
    """Packed sequences: q [total_q, nheads, headdim], k/v [total_k, nheads_k,
    headdim], cu_seqlens_* [batch + 1] int32. out [total_q, nheads, headdim_v];
    with return_attn_probs, (out, softmax_lse [nheads, total_q], None).
    Rows past cu_seqlens_q[-1] come out 0.

    With block_table (int32 [batch, max_blocks_per_seq]), k and v are a paged
    KV cache [num_blocks, page_block_size, nheads_k, headdim] and sequence b
    attends to its first cu_seqlens_k[b + 1] - cu_seqlens_k[b] cache
    positions, read in place through the table (inference: dropout_p 0, no
    backward)."""
    others = dict(cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                  alibi_slopes=alibi_slopes, block_table=block_table)
    if block_table is None:
        _check_inputs(q, k, v, 3, "[total, nheads, headdim]", **others)
    else:
        _arrays.check_array("q", q)
        _arrays.check_attention_dtype("q", q)
        _arrays.check_same_kind(("q", "k", "v") + tuple(others),
                                (q, k, v) + tuple(others.values()))
        if q.ndim != 3:  # type: ignore[attr-defined]
            raise ValueError(f"q: expected 3 axes [total_q, nheads, headdim], got shape "
                             f"{list(q.shape)}")  # type: ignore[attr-defined]
    _args.boolean("deterministic", deterministic)
    return_attn_probs = _args.boolean("return_attn_probs", return_attn_probs)
    cu_q = _args.cu_seqlens("cu_seqlens_q", cu_seqlens_q)
    cu_k = _args.cu_seqlens("cu_seqlens_k", cu_seqlens_k)
    _check_max_seqlen("max_seqlen_q", max_seqlen_q, cu_q)
    max_seqlen_k = _check_max_seqlen("max_seqlen_k", max_seqlen_k, cu_k)
    if block_table is not None:
        out, lse = _paged.varlen_paged(
            q, k, v, cu_q, cu_k, max_seqlen_k, block_table,
            _args.real("dropout_p", dropout_p),
            _args.optional_real("softmax_scale", softmax_scale, finite=True),
            _args.boolean("causal", causal), _args.window(window_size),
            _args.real("softcap", softcap), alibi_slopes, return_attn_probs)
        return (out, lse, None) if return_attn_probs else out
    total_q, heads_q = q.shape[:2]  # type: ignore[attr-defined]
    out, lse = _attend(q[None], k[None], v[None], lse_shape=(heads_q, total_q),  # type: ignore[index]
                       dropout_p=dropout_p, softmax_scale=softmax_scale, causal=causal,
                       window_size=window_size, softcap=softcap, alibi_slopes=alibi_slopes,
                       return_lse=return_attn_probs, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k)
    return (out[0], lse, None) if return_attn_probs else out[0]


def flash_attn_qkvpacked_func(qkv: Array, dropout_p: float = 0.0,
                              softmax_scale: Optional[float] = None, causal: bool = False,
                              window_size: Tuple[int, int] = (-1, -1), softcap: float = 0.0,
                              alibi_slopes: Any = None, deterministic: bool = False,
                              return_attn_probs: bool = False) -> Result[Array]:
    """qkv [batch, seqlen, 3, nheads, headdim]; as flash_attn_func."""
    q, k, v = _unpack(qkv, "qkv", 3, 2, "[batch, seqlen, 3, nheads, headdim]")
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size,
                           softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q: Array, kv: Array, dropout_p: float = 0.0,
                             softmax_scale: Optional[float] = None, causal: bool = False,
                             window_size: Tuple[int, int] = (-1, -1), softcap: float = 0.0,
                             alibi_slopes: Any = None, deterministic: bool = False,
                             return_attn_probs: bool = False) -> Result[Array]:
    """kv [batch, seqlen_k, 2, nheads_k, headdim]; as flash_attn_func."""
    k, v = _unpack(kv, "kv", 2, 2, "[batch, seqlen_k, 2, nheads_k, headdim]")
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size,
                           softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_qkvpacked_func(qkv: Array, cu_seqlens: Any, max_seqlen: int,
                                     dropout_p: float = 0.0,
                                     softmax_scale: Optional[float] = None,
                                     causal: bool = False,
                                     window_size: Tuple[int, int] = (-1, -1),
                                     softcap: float = 0.0, alibi_slopes: Any = None,
                                     deterministic: bool = False,
                                     return_attn_probs: bool = False) -> Result[Array]:
    """qkv [total, 3, nheads, headdim]; as flash_attn_varlen_func."""
    q, k, v = _unpack(qkv, "qkv", 3, 1, "[total, 3, nheads, headdim]")
    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen,
                                  dropout_p, softmax_scale, causal, window_size, softcap,
                                  alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_kvpacked_func(q: Array, kv: Array, cu_seqlens_q: Any,
                                    cu_seqlens_k: Any, max_seqlen_q: int, max_seqlen_k: int,
                                    dropout_p: float = 0.0,
                                    softmax_scale: Optional[float] = None,
                                    causal: bool = False,
                                    window_size: Tuple[int, int] = (-1, -1),
                                    softcap: float = 0.0, alibi_slopes: Any = None,
                                    deterministic: bool = False,
                                    return_attn_probs: bool = False) -> Result[Array]:
    """kv [total_k, 2, nheads_k, headdim]; as flash_attn_varlen_func."""
    k, v = _unpack(kv, "kv", 2, 1, "[total_k, 2, nheads_k, headdim]")
    return flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                  max_seqlen_k, dropout_p, softmax_scale, causal,
                                  window_size, softcap, alibi_slopes, deterministic,
                                  return_attn_probs)


def flash_attn_with_kvcache(q: Array, k_cache: Array, v_cache: Array, k: Optional[Array] = None,
                            v: Optional[Array] = None, rotary_cos: Any = None,
                            rotary_sin: Any = None, cache_seqlens: Any = None,
                            cache_batch_idx: Any = None, cache_leftpad: Any = None,
                            block_table: Any = None, softmax_scale: Optional[float] = None,
                            causal: bool = False, window_size: Tuple[int, int] = (-1, -1),
                            softcap: float = 0.0, rotary_interleaved: bool = True,
                            alibi_slopes: Any = None, num_splits: int = 0,
                            return_softmax_lse: bool = False
                            ) -> Union[Array, Tuple[Array, Array]]:
    """Decoding against a KV cache: q [batch, seqlen_q, nheads, headdim];
    k_cache/v_cache [batch_cache, seqlen_cache, nheads_k, headdim], or with
    block_table (int32 [batch, max_blocks]) paged [num_blocks,
    page_block_size, nheads_k, headdim]; float32, bfloat16 or float16 (read
    in place, computed in float32). If k and v ([batch, seqlen_new, nheads_k,
    headdim]) are given, they are written into the caches in place at
    cache_seqlens (an int or [batch] int32) first; attention then runs over
    cache positions cache_leftpad .. cache_seqlens + seqlen_new - 1 of each
    entry (without cache_seqlens: the whole cache, or only k/v when they are
    given; cache_leftpad [batch] int32 defaults to 0). cache_batch_idx
    ([batch] int32) picks the cache row of each entry of a contiguous cache
    (default: entry b reads row b). rotary_cos/rotary_sin ([seqlen_ro,
    rotary_dim / 2], need k and v) rotate k at positions cache_seqlens +
    0, 1, ... and q at the same positions when causal or local, else all of
    q at position cache_seqlens; rotary_interleaved pairs features (0, 1),
    (2, 3), ... (True) or (i, i + rotary_dim / 2) (False). causal aligns the
    queries to the end of the keys. Returns out (q's dtype), or (out,
    softmax_lse float32 [batch, nheads, seqlen_q]) with return_softmax_lse.
    num_splits is accepted and ignored: salience splits long caches itself,
    at points fixed by the lengths (deterministic). No backward."""
    out, lse = _kvcache.with_kvcache(q, k_cache, v_cache, k, v, rotary_cos, rotary_sin,
                                     cache_seqlens, cache_batch_idx, cache_leftpad,
                                     block_table, softmax_scale, causal, window_size, softcap,
                                     rotary_interleaved, alibi_slopes, num_splits,
                                     return_softmax_lse)
    return (out, lse) if lse is not None else out  # type: ignore[return-value]
