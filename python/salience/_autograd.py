"""Gradients of salience's attention for torch's autograd.

Every entry point maps its tensors onto the kernel's logical
[batch, seq, heads, dim] axes with views (swapaxes, reshape, expand), which
autograd records; the attention itself is one torch.autograd.Function over
those views. Its forward runs the kernel and keeps q, k, v, out and the
row log-sum-exp (never the seq_q x seq_k weights); its backward calls the
C++ backward, which recomputes the weights from q, k and lse. Gradients then
flow back through the views: a broadcast key (expand) has its gradient
summed, a transposed one transposed back, by torch.

The backward is itself not differentiable (no double backward): it is
marked once_differentiable, so a gradient taken with create_graph=True and
then differentiated again raises instead of being silently wrong.

Dropout needs nothing saved either: the mask is a function of
(dropout_seed, dropout_offset) and the element's indices, so the backward,
given the forward's options, regenerates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from salience import _args, _arrays, _salience


@dataclass(frozen=True)
class Call:
    """One attention call, but for q, k, v and the mask.

    new_out() allocates the output in the caller's shape and memory order,
    logical(out) views it (or a gradient of its shape) as [batch, seq,
    heads, head_dim_v]; options are the keyword arguments that forward() and
    backward() of salience._salience share (already converted: index arrays
    int32, slopes float32)."""

    new_out: Callable[[], Any]
    logical: Callable[[Any], Any]
    lse_shape: Tuple[int, int, int]
    options: Dict[str, Any]


def forward(q: Any, k: Any, v: Any, mask: Optional[Any], call: Call,
            lse: Optional[Any]) -> Any:
    """Runs the kernel into a new output (and `lse` if given); no autograd."""
    out = call.new_out()
    _salience.forward(
        _arrays.for_kernel(q), _arrays.for_kernel(k), _arrays.for_kernel(v),
        call.logical(out), lse=lse,
        mask=None if mask is None else _arrays.for_kernel(mask), **call.options)
    return out


def _function() -> Any:
    torch = _arrays._torch()
    from torch.autograd.function import once_differentiable

    class SalienceAttention(torch.autograd.Function):  # type: ignore[misc,name-defined]
        """out, lse = attention(q, k, v); lse is not differentiable."""

        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any, mask: Optional[Any],
                    call: Call) -> Tuple[Any, Any]:
            lse = torch.empty(call.lse_shape, dtype=torch.float32)
            out = forward(q, k, v, mask, call, lse)
            ctx.save_for_backward(q, k, v, out, lse)
            ctx.mask = None if mask is None else _arrays.for_kernel(mask)
            ctx.call = call
            ctx.mark_non_differentiable(lse)
            return out, lse

        @staticmethod
        @once_differentiable
        def backward(ctx: Any, d_out: Any, _: Any) -> Tuple[Any, ...]:
            if ctx.needs_input_grad[3]:
                raise NotImplementedError(
                    "salience computes gradients of q, k and v only, not of the "
                    "mask; detach it (mask.detach()) or pass a bool mask")
            q, k, v, out, lse = ctx.saved_tensors
            call: Call = ctx.call
            # Gradients in the inputs' dtypes (fp32 arithmetic inside).
            dq = torch.empty(q.shape, dtype=q.dtype)
            dk = torch.empty(k.shape, dtype=k.dtype)
            dv = torch.empty(v.shape, dtype=v.dtype)
            _salience.backward(
                *(_arrays.for_kernel(x) for x in (q, k, v, call.logical(out),
                                                  call.logical(d_out))),
                lse, dq, dk, dv, mask=ctx.mask, **call.options)
            return dq, dk, dv, None, None

    return SalienceAttention


_attention_function: Any = None


def apply(q: Any, k: Any, v: Any, mask: Optional[Any], call: Call) -> Tuple[Any, Any]:
    """(out, lse) of the call, recorded by autograd: q, k, v (torch tensors
    in the logical [batch, seq, heads, dim] axes) get gradients."""
    global _attention_function
    if _attention_function is None:
        _attention_function = _function()
    out, lse = _attention_function.apply(q, k, v, mask, call)
    return out, lse


def _inference_function() -> Any:
    torch = _arrays._torch()

    class InferenceOnly(torch.autograd.Function):  # type: ignore[misc,name-defined]
        """Runs an inference-only computation (decode against a KV cache,
        the merge of attention states) so that a backward through its
        outputs raises instead of giving the inputs no gradient silently."""

        @staticmethod
        def forward(ctx: Any, name: str, run: Callable[[], Tuple[Any, ...]],
                    *inputs: Any) -> Tuple[Any, ...]:
            ctx.name = name
            outputs = run()
            ctx.mark_non_differentiable(*outputs[1:])
            return outputs

        @staticmethod
        def backward(ctx: Any, *grads: Any) -> Tuple[Any, ...]:
            raise NotImplementedError(
                f"{ctx.name} has no backward (inference only, as in flash-attn); "
                f"call it under torch.no_grad() or on detached inputs")

    return InferenceOnly


_inference_only: Any = None


def inference_only(name: str, inputs: Tuple[Any, ...],
                   run: Callable[[], Tuple[Any, ...]]) -> Tuple[Any, ...]:
    """run() (a tuple of new arrays: the result, then outputs that never
    have gradients, such as an lse), and when torch would record a graph
    for `inputs`, recorded as a node whose backward raises
    NotImplementedError naming `name`."""
    global _inference_only
    if not _arrays.needs_graph(inputs):
        return run()
    if _inference_only is None:
        _inference_only = _inference_function()
    return tuple(_inference_only.apply(name, run, *(x for x in inputs if x is not None)))


def dropout_options(dropout_p: float, like: Any, seed: Optional[int] = None,
                    offset: Optional[int] = None) -> Dict[str, Any]:
    """The kernel's dropout options for a call: none when dropout_p is 0;
    else dropout_p with the given seed and offset, or a fresh pair drawn
    from torch's default CPU generator for torch tensors (torch.manual_seed
    makes the masks reproducible; each call advances the generator) or from
    NumPy's global generator (numpy.random.seed) for NumPy arrays."""
    dropout_p = _args.real("dropout_p", dropout_p)
    if not 0.0 <= dropout_p < 1.0:  # also false for NaN
        raise ValueError(f"dropout_p: expected a probability in [0, 1), got {dropout_p}")
    seed = _args.optional_integer("dropout_seed", seed, 0, 2**64 - 1)
    offset = _args.optional_integer("dropout_offset", offset, 0, 2**64 - 1)
    if dropout_p == 0.0:
        return {}
    if seed is None or offset is None:
        if _arrays.is_torch(like):
            torch = _arrays._torch()
            draws = torch.randint(0, 2**63 - 1, (2,), dtype=torch.int64).tolist()
        else:
            draws = np.random.randint(0, 2**63 - 1, size=2, dtype=np.int64).tolist()
        seed = draws[0] if seed is None else seed
        offset = draws[1] if offset is None else offset
    return {"dropout_p": float(dropout_p), "dropout_seed": int(seed),
            "dropout_offset": int(offset)}
