"""salience.scaled_dot_product_attention: torch's function, on salience.

Semantics of torch.nn.functional.scaled_dot_product_attention in torch 2.13:

  query [..., L, E], key [..., S, E], value [..., S, Ev] -> [..., L, Ev]

The leading ("batch") axes broadcast against each other; with enable_gqa the
heads axis (-3) of key and value may instead divide query's. attn_mask
broadcasts to the weights' shape [..., L, S]: bool True takes part, float
is added. is_causal is aligned top-left (query i sees keys j <= i).

The mapping onto the kernel's [batch, seq, heads, dim] views: the leading
axes are broadcast by stride-0 views, then flattened into (batch, heads) by
reshape, which is a view for the usual 2..4-axis layouts (and copies only
when strides cannot merge, e.g. 5 axes with a broadcast in the middle one).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, TypeVar

import numpy as np

from salience import _args, _arrays, _autograd
from salience._attention import attend, check_mask
from salience._salience import MAX_HEAD_DIM

Array = TypeVar("Array")


def _broadcast(what: str, shapes: Sequence[Tuple[int, ...]], names: Sequence[str]) -> Tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        described = ", ".join(f"{n} {list(s)}" for n, s in zip(names, shapes))
        raise ValueError(f"{what} do not broadcast: {described}") from None


def _broadcasts_to(shape: Tuple[int, ...], target: Tuple[int, ...]) -> bool:
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(shape[::-1], target[::-1]))


def _batch_and_heads(dims: Tuple[int, ...]) -> Tuple[int, int]:
    """The kernel's (batch, heads) for leading axes `dims`: heads is the last."""
    if not dims:
        return 1, 1
    return math.prod(dims[:-1]), dims[-1]


def scaled_dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    attn_mask: Optional[Any] = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: Optional[float] = None,
    enable_gqa: bool = False,
) -> Array:
    """Drop-in for torch.nn.functional.scaled_dot_product_attention (torch
    2.13) on the CPU, float32; takes torch tensors or NumPy arrays (any
    strides, no copy) and returns the same kind.

    Gradients of query, key and value flow through autograd (not of a float
    attn_mask). dropout_p drops attention weights with a mask drawn from
    torch's default generator (see docs/python.md), not torch's own dropout
    stream, so masks differ from torch's for the same seed. Differences
    from torch: is_causal together with attn_mask applies both (as torch's
    default CPU backend does; its math backend raises instead). A query row
    that no key may attend gives 0, as torch 2.13 does on the CPU.
    """
    names = ("query", "key", "value")
    arrays = (query, key, value)
    for name, x in zip(names, arrays):
        _arrays.check_array(name, x)
        _arrays.check_attention_dtype(name, x)
    _arrays.check_same_kind(names + ("attn_mask",), arrays + (attn_mask,))
    is_causal = _args.boolean("is_causal", is_causal)
    enable_gqa = _args.boolean("enable_gqa", enable_gqa)
    scale = _args.optional_real("scale", scale)
    dropout = _autograd.dropout_options(dropout_p, query)
    ndims = [x.ndim for x in arrays]  # type: ignore[attr-defined]
    if min(ndims) < 2:
        raise ValueError(
            "query, key, value: expected at least 2 axes [..., L, E] each, got "
            f"query.ndim={ndims[0]}, key.ndim={ndims[1]}, value.ndim={ndims[2]}"
        )
    q_shape, k_shape, v_shape = (tuple(x.shape) for x in arrays)  # type: ignore[attr-defined]
    seq_q, head_dim = q_shape[-2:]
    seq_k, head_dim_v = k_shape[-2], v_shape[-1]
    if k_shape[-1] != head_dim:
        raise ValueError(f"key.shape[-1] (E): expected {head_dim} (query.shape[-1]), got {k_shape[-1]}")
    if v_shape[-2] != seq_k:
        raise ValueError(f"value.shape[-2] (S): expected {seq_k} (key.shape[-2]), got {v_shape[-2]}")

    for name, size in (("query.shape[-1] (E)", head_dim), ("value.shape[-1] (Ev)", head_dim_v)):
        if not 1 <= size <= MAX_HEAD_DIM:
            raise ValueError(f"{name}: expected 1..{MAX_HEAD_DIM}, got {size}")

    q_lead, k_lead, v_lead = q_shape[:-2], k_shape[:-2], v_shape[:-2]
    grouped = enable_gqa and min(ndims) >= 3 and not (q_lead[-1] == k_lead[-1] == v_lead[-1])
    if grouped:
        heads_q, heads_k, heads_v = q_lead[-1], k_lead[-1], v_lead[-1]
        if heads_k != heads_v or heads_k == 0 or heads_q % heads_k != 0:
            raise ValueError(
                "enable_gqa: the number of heads of key and value (shape[-3]) must be "
                f"equal and divide query's; got query {heads_q}, key {heads_k}, value {heads_v}"
            )
        outer = _broadcast("the batch axes of query, key and value (before the heads axis)",
                           (q_lead[:-1], k_lead[:-1], v_lead[:-1]), names)
        out_lead, kv_lead = outer + (heads_q,), outer + (heads_k,)
    else:
        out_lead = kv_lead = _broadcast(
            "the batch axes of query, key and value (all but the last two)",
            (q_lead, k_lead, v_lead), names)

    batch, heads_q = _batch_and_heads(out_lead)
    _, heads_kv = _batch_and_heads(kv_lead)

    def logical(x: Any, lead: Tuple[int, ...], heads: int) -> Any:
        """x broadcast to lead + its last two axes, as [batch, seq, heads, dim]."""
        full = _arrays.broadcast_to(x, lead + tuple(x.shape[-2:]))
        return full.reshape((batch, heads) + tuple(x.shape[-2:])).swapaxes(1, 2)

    mask = None
    if attn_mask is not None:
        check_mask("attn_mask", attn_mask)
        weights = out_lead + (seq_q, seq_k)
        m_shape = tuple(attn_mask.shape)
        if not _broadcasts_to(m_shape, weights):
            raise ValueError(
                f"attn_mask of shape {list(m_shape)} does not broadcast to the "
                f"attention weights' shape {list(weights)} ([..., L, S])"
            )
        mask = _arrays.broadcast_to(attn_mask, weights).reshape((batch, heads_q, seq_q, seq_k))

    out_shape = out_lead + (seq_q, head_dim_v)
    if math.prod(out_shape) == 0:  # e.g. 0 heads, which the kernel's views cannot have
        return _arrays.empty_like_dtype(query, out_shape)  # type: ignore[no-any-return]

    def logical_out(out: Any) -> Any:
        return out.reshape((batch, heads_q, seq_q, head_dim_v)).swapaxes(1, 2)

    out, _ = attend(logical(query, out_lead, heads_q), logical(key, kv_lead, heads_kv),
                    logical(value, kv_lead, heads_kv),
                    new_out=lambda: _arrays.empty_like_dtype(query, out_shape),
                    logical_out=logical_out, return_lse=False, mask=mask, scale=scale,
                    causal="top_left" if is_causal else "none", **dropout)
    return out  # type: ignore[no-any-return]
