"""Attention with per-head sinks (gpt-oss's `s_aux`), on salience's kernels.

A sink is a logit s_h that takes part in head h's softmax without a value:

  out_i = sum_j exp(s_ij - L_i) v_j,   L_i = log(exp(s_h) + sum_j exp(s_ij))

So with the kernel's out and lse (over the keys alone),

  L_i = logaddexp(lse_i, s_h),   out_i = exp(lse_i - L_i) * kernel out_i,

and the backward is the kernel's FlashAttention-2 backward given this out and
L in place of lse: it recomputes the weights as exp(s_ij - L_i), which are
the sink softmax's, and its row term rowsum(d_out * out) is the sink
attention's. The sink's own gradient is

  d s_h = -sum_{b, i} exp(s_h - L_bhi) * rowsum(d_out * out)_bhi.

Nothing of size q x k is formed, and a decode step still runs on the decode
kernel (the forward is an ordinary call with return_lse=True).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

import salience
from salience import _salience
from salience._attention import kernel_options


def _logical(x: torch.Tensor) -> torch.Tensor:
    """[batch, heads, seq, dim] as the kernel's [batch, seq, heads, dim] view."""
    return x.transpose(1, 2)


class _SinkAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                sinks: torch.Tensor, mask: Optional[torch.Tensor],
                options: Dict[str, Any]) -> torch.Tensor:
        out, lse = salience.attention(q, k, v, layout="bhnd", mask=mask, return_lse=True,
                                      **options)
        sink = sinks.to(torch.float32)[None, :, None]
        lse_all = torch.logaddexp(lse, sink)
        out = (out.to(torch.float32) * torch.exp(lse - lse_all)[..., None]).to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse_all, sinks)
        ctx.mask = mask
        ctx.options = options
        return out

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        q, k, v, out, lse_all, sinks = ctx.saved_tensors
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        scalars = {name: value for name, value in ctx.options.items()
                   if name not in ("seqlens_k", "num_threads")}
        _salience.backward(
            _logical(q), _logical(k), _logical(v), _logical(out), _logical(d_out),
            lse_all, _logical(dq), _logical(dk), _logical(dv), mask=ctx.mask,
            **kernel_options(seqlens_k=ctx.options.get("seqlens_k"),
                             num_threads=ctx.options.get("num_threads"), **scalars))
        row_term = (d_out.to(torch.float32) * out.to(torch.float32)).sum(dim=-1)
        sink_weight = torch.exp(sinks.to(torch.float32)[None, :, None] - lse_all)
        d_sinks = -(sink_weight * row_term).sum(dim=(0, 2))
        return dq, dk, dv, d_sinks.to(sinks.dtype), None, None


def attention_with_sinks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         sinks: torch.Tensor, mask: Optional[torch.Tensor] = None,
                         **options: Any) -> torch.Tensor:
    """Attention of [batch, heads, seq, dim] tensors whose softmax includes
    one sink logit per query head (sinks: [heads_q]); options are
    salience.attention's (scale, causal, window_*, seqlens_k, softcap,
    dropout_p with dropout_seed and dropout_offset both given, num_threads).
    Differentiable in q, k, v and sinks."""
    if sinks.shape != (q.shape[1],):
        raise ValueError(f"sinks: expected shape [{q.shape[1]}] (one per query head), "
                         f"got {list(sinks.shape)}")
    if options.get("dropout_p", 0.0) > 0.0 and (options.get("dropout_seed") is None
                                                 or options.get("dropout_offset") is None):
        raise ValueError("dropout_p > 0 with sinks needs dropout_seed and dropout_offset "
                         "(the backward regenerates the forward's mask)")
    out: torch.Tensor = _SinkAttention.apply(q, k, v, sinks, mask, options)
    return out
