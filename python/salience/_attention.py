"""salience.attention: every option of the C++ library, by keyword.

Tensors are [batch, seq, heads, head_dim] (flash-attn's memory order,
layout="bnhd") or [batch, heads, seq, head_dim] (torch's, layout="bhnd"),
with any strides; a 3-axis tensor omits the batch axis. Whatever the layout,
the kernel sees a strided view with the library's logical axes
[batch, seq, heads, head_dim]: swapping two axes is a view, never a copy.

`attend` is the one call into the C++ module that every entry point makes;
under autograd it goes through salience._autograd, whose backward calls the
C++ backward.
"""

from __future__ import annotations

from typing import (TYPE_CHECKING, Any, Callable, Dict, Literal, Optional, Tuple, TypeVar,
                    Union, overload)

import numpy as np

from salience import _args, _arrays, _autograd, _salience

Array = TypeVar("Array")
Layout = Literal["bnhd", "bhnd"]
CausalArg = Union[bool, None, Literal["none", "top_left", "bottom_right"]]
AlignArg = Literal["top_left", "bottom_right"]

_num_threads = 0


def set_num_threads(num_threads: int) -> None:
    """Sets the worker threads every call uses unless it passes num_threads;
    0 (the default) means OpenMP's default: OMP_NUM_THREADS, else all cores."""
    global _num_threads
    _num_threads = _args.num_threads(num_threads)


def get_num_threads() -> int:
    """The worker threads a call uses by default."""
    return _num_threads if _num_threads > 0 else _salience.max_threads()


_CAUSAL_NAMES = ("none", "top_left", "bottom_right")


def _causal_name(causal: CausalArg) -> str:
    if causal is None or causal is False or causal is np.False_:
        return "none"
    if causal is True or causal is np.True_:
        return "bottom_right"
    if isinstance(causal, str) and causal in _CAUSAL_NAMES:
        return causal
    raise (ValueError if isinstance(causal, str) else TypeError)(
        f"causal: expected False, True, None, 'none', 'top_left' or 'bottom_right', "
        f"got {causal!r}")


def _choice(name: str, value: Any, choices: Tuple[str, ...]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    expected = " or ".join(repr(c) for c in choices)
    raise (ValueError if isinstance(value, str) else TypeError)(
        f"{name}: expected {expected}, got {value!r}")


def kernel_options(
    *,
    alibi_slopes: Any = None,
    seqlens_q: Any = None,
    seqlens_k: Any = None,
    cu_seqlens_q: Any = None,
    cu_seqlens_k: Any = None,
    num_threads: Optional[int] = None,
    reference: bool = False,
    **scalars: Any,
) -> Dict[str, Any]:
    """The keyword arguments forward() and backward() of the C++ module share
    but the mask, checked and converted to the module's types (salience._args):
    index arrays int32, slopes float32, the thread count resolved, scale and
    softcap float, windows int64; causal and window_align names; dropout_*
    as dropout_options gives them."""
    scale = scalars.pop("scale", None)
    softcap = scalars.pop("softcap", 0.0)
    window_left = scalars.pop("window_left", -1)
    window_right = scalars.pop("window_right", -1)
    window_align = scalars.pop("window_align", "bottom_right")
    return dict(
        alibi_slopes=_args.float32_vector("alibi_slopes", alibi_slopes),
        seqlens_q=_args.optional_index_array("seqlens_q", seqlens_q),
        seqlens_k=_args.optional_index_array("seqlens_k", seqlens_k),
        cu_seqlens_q=_args.optional_cu_seqlens("cu_seqlens_q", cu_seqlens_q),
        cu_seqlens_k=_args.optional_cu_seqlens("cu_seqlens_k", cu_seqlens_k),
        num_threads=_num_threads if num_threads is None else _args.num_threads(num_threads),
        reference=_args.boolean("reference", reference),
        scale=_args.optional_real("scale", scale),
        softcap=_args.real("softcap", softcap),
        window_left=_args.integer("window_left", window_left, _args.INT64_MIN, _args.INT64_MAX),
        window_right=_args.integer("window_right", window_right, _args.INT64_MIN,
                                   _args.INT64_MAX),
        window_align=_choice("window_align", window_align, ("top_left", "bottom_right")),
        **scalars,
    )


def attend(q: Any, k: Any, v: Any, *, new_out: Callable[[], Any],
           logical_out: Callable[[Any], Any], return_lse: bool, mask: Any = None,
           **options: Any) -> Tuple[Any, Optional[Any]]:
    """Attention of [batch, seq, heads, dim] views q, k, v into a new output:
    new_out() allocates it in the caller's shape and logical_out(out) views
    it as [batch, seq_q, heads_q, head_dim_v]. Returns (out, lse or None;
    lse [batch, heads_q, seq_q]). When torch records a graph for q, k, v (or
    the mask), the call goes through autograd (salience._autograd) and lse is
    always computed: the backward needs it."""
    call = _autograd.Call(new_out=new_out, logical=logical_out,
                          lse_shape=(q.shape[0], q.shape[2], q.shape[1]),
                          options=kernel_options(**options))
    if _arrays.needs_graph((q, k, v, mask)):
        out, lse = _autograd.apply(q, k, v, mask, call)
        return out, lse if return_lse else None
    lse = _arrays.empty_float32(q, call.lse_shape) if return_lse else None
    return _autograd.forward(q, k, v, mask, call, lse), lse


def check_mask(name: str, mask: Any) -> None:
    _arrays.check_array(name, mask)
    if not (_arrays.is_bool(mask) or _arrays.is_float32(mask)):
        raise TypeError(
            f"{name}.dtype: expected bool (True = may attend) or float32 "
            f"(added to the scores), got {_arrays.dtype_name(mask)}"
        )


if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack

    class Options(TypedDict, total=False):
        """attention()'s keyword arguments but return_lse, for its overloads."""

        layout: Layout
        scale: Optional[float]
        causal: CausalArg
        window_left: int
        window_right: int
        window_align: AlignArg
        seqlens_q: Any
        seqlens_k: Any
        cu_seqlens_q: Any
        cu_seqlens_k: Any
        mask: Any
        alibi_slopes: Any
        softcap: float
        dropout_p: float
        dropout_seed: Optional[int]
        dropout_offset: Optional[int]
        num_threads: Optional[int]
        out: Any
        reference: bool


@overload
def attention(q: Array, k: Array, v: Array, *, return_lse: Literal[False] = ...,
              **options: Unpack[Options]) -> Array: ...
@overload
def attention(q: Array, k: Array, v: Array, *, return_lse: Literal[True],
              **options: Unpack[Options]) -> Tuple[Array, Array]: ...


def attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    layout: Layout = "bnhd",
    scale: Optional[float] = None,
    causal: CausalArg = False,
    window_left: int = -1,
    window_right: int = -1,
    window_align: AlignArg = "bottom_right",
    seqlens_q: Any = None,
    seqlens_k: Any = None,
    cu_seqlens_q: Any = None,
    cu_seqlens_k: Any = None,
    mask: Any = None,
    alibi_slopes: Any = None,
    softcap: float = 0.0,
    dropout_p: float = 0.0,
    dropout_seed: Optional[int] = None,
    dropout_offset: Optional[int] = None,
    num_threads: Optional[int] = None,
    return_lse: bool = False,
    out: Optional[Array] = None,
    reference: bool = False,
) -> Union[Array, Tuple[Array, Array]]:
    """Exact attention with every option of the C++ library.

    q [batch, seq_q, heads_q, head_dim], k [batch, seq_k, heads_kv, head_dim]
    and v [batch, seq_k, heads_kv, head_dim_v] in memory order `layout`
    ("bnhd", flash-attn's, or "bhnd", torch's [batch, heads, seq, dim]); the
    batch axis may be left out (3 axes). float32 torch tensors or NumPy
    arrays, any strides, on the CPU; the output has q's kind and layout.

    scale: multiplies q.k (default 1/sqrt(head_dim)).
    causal: False/"none"; "top_left" (query i sees keys j <= i, torch's
        is_causal); "bottom_right" or True (keys j <= i + seq_k - seq_q,
        flash-attn's).
    window_left, window_right, window_align: sliding window, query i sees keys
        a - window_left <= j <= a + window_right, a = i ("top_left") or
        i + seq_k - seq_q ("bottom_right"); negative = unbounded.
    seqlens_q, seqlens_k: padding, valid lengths per batch entry; rows past
        seqlens_q come out 0.
    cu_seqlens_q, cu_seqlens_k: a packed variable-length batch (batch 1, or no
        batch axis): sequence s owns rows cu[s]..cu[s+1].
    mask: [batch|1, heads_q|1, seq_q|1, seq_k|1] (leading axes may be left
        out), bool (True = may attend) or float32 (added to the scores).
    alibi_slopes: [heads_q] or [batch, heads_q]; adds
        -slope * |i + seq_k - seq_q - j|.
    softcap: s = softcap * tanh(s / softcap) when > 0.
    dropout_p, dropout_seed, dropout_offset: drop each attention weight with
        probability dropout_p in [0, 1) and scale the kept ones by
        1 / (1 - dropout_p); the mask is a function of the seed, the offset
        and the weight's indices. A seed or offset left None is drawn from
        torch's default generator (NumPy's for arrays).
    num_threads: worker threads (default: set_num_threads's, else all cores).
    return_lse: also return the log-sum-exp of each row's scores, float32
        [batch, heads_q, seq_q] ([heads_q, seq_q] without a batch axis).
    out: write into this array (q's layout and shape with head_dim_v; a
        writable array of the inputs' kind); as with torch's out= functions,
        its version counter is bumped and, while grad mode is on, neither
        it nor an input may require grad (RuntimeError).
    reference: run the fp64 reference kernel (slow; the tests' oracle).

    A row that sees no key gets out = 0 and lse = -inf. Under autograd,
    q, k and v get gradients (float32; not the mask).
    """
    names = ("q", "k", "v")
    for name, x in zip(names, (q, k, v)):
        _arrays.check_array(name, x)
        _arrays.check_attention_dtype(name, x)
    _arrays.check_same_kind(
        names + ("mask", "out", "alibi_slopes", "seqlens_q", "seqlens_k", "cu_seqlens_q",
                 "cu_seqlens_k"),
        (q, k, v, mask, out, alibi_slopes, seqlens_q, seqlens_k, cu_seqlens_q, cu_seqlens_k))
    layout = _choice("layout", layout, ("bnhd", "bhnd"))  # type: ignore[assignment]
    return_lse = _args.boolean("return_lse", return_lse)
    axes = "[batch, seq, heads, head_dim]" if layout == "bnhd" else "[batch, heads, seq, head_dim]"
    ranks = tuple(x.ndim for x in (q, k, v))  # type: ignore[attr-defined]
    if ranks[0] not in (3, 4) or len(set(ranks)) != 1:
        raise ValueError(
            f"q, k, v: expected 4 axes {axes} each (or 3, without batch), "
            f"got q.ndim={ranks[0]}, k.ndim={ranks[1]}, v.ndim={ranks[2]}"
        )
    batched = ranks[0] == 4

    def logical(x: Any) -> Any:  # [batch, seq, heads, dim] view
        x = x if batched else x[None]
        return x if layout == "bnhd" else x.swapaxes(1, 2)

    q4, k4, v4 = logical(q), logical(k), logical(v)
    batch, seq_q, heads_q, _ = q4.shape
    head_dim_v = v4.shape[3]
    if out is not None:
        _arrays.check_array("out", out)
        _arrays.check_attention_dtype("out", out)
        if out.ndim != ranks[0]:  # type: ignore[attr-defined]
            raise ValueError(f"out: expected {ranks[0]} axes like q, got {out.ndim}")  # type: ignore[attr-defined]
        _arrays.check_writable("out", out)
        _arrays.check_grad_for_write("out", out, (q, k, v, mask))
    given_out = out

    def new_out() -> Any:
        if given_out is not None:
            return given_out
        shape = (batch, seq_q, heads_q, head_dim_v)
        if layout == "bhnd":
            shape = (batch, heads_q, seq_q, head_dim_v)
        return _arrays.empty_like_dtype(q, shape if batched else shape[1:])

    mask4 = None
    if mask is not None:
        check_mask("mask", mask)
        if mask.ndim > 4:
            raise ValueError(
                f"mask: expected at most 4 axes [batch|1, heads_q|1, seq_q|1, "
                f"seq_k|1], got shape {tuple(mask.shape)}"
            )
        mask4 = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))

    result, lse = attend(
        q4, k4, v4, new_out=new_out, logical_out=logical, return_lse=return_lse,
        mask=mask4, alibi_slopes=alibi_slopes, seqlens_q=seqlens_q,
        seqlens_k=seqlens_k, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
        num_threads=num_threads, reference=reference, scale=scale,
        causal=_causal_name(causal), window_left=window_left,
        window_right=window_right, window_align=window_align, softcap=softcap,
        **_autograd.dropout_options(dropout_p, q, dropout_seed, dropout_offset))
    if out is not None:
        _arrays.mark_written(out)
    if lse is None:
        return result  # type: ignore[no-any-return]
    return result, (lse if batched else lse[0])
