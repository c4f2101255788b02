"""salience.attention: every option of the C++ library, by keyword.

Tensors are [batch, seq, heads, head_dim] (flash-attn's memory order,
layout="bnhd") or [batch, heads, seq, head_dim] (torch's, layout="bhnd"),
with any strides; a 3-axis tensor omits the batch axis. Whatever the layout,
the kernel sees a strided view with the library's logical axes
[batch, seq, heads, head_dim]: swapping two axes is a view, never a copy.

`run` is the one call into the C++ module that every entry point makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional, Tuple, TypeVar, Union, overload

from salience import _arrays, _salience

Array = TypeVar("Array")
Layout = Literal["bnhd", "bhnd"]
CausalArg = Union[bool, None, Literal["none", "top_left", "bottom_right"]]
AlignArg = Literal["top_left", "bottom_right"]

_num_threads = 0


def set_num_threads(num_threads: int) -> None:
    """Sets the worker threads every call uses unless it passes num_threads;
    0 (the default) means OpenMP's default: OMP_NUM_THREADS, else all cores."""
    global _num_threads
    if not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"num_threads: expected an int >= 0, got {num_threads!r}")
    _num_threads = num_threads


def get_num_threads() -> int:
    """The worker threads a call uses by default."""
    return _num_threads if _num_threads > 0 else _salience.max_threads()


def _causal_name(causal: CausalArg) -> str:
    if causal is None or causal is False:
        return "none"
    if causal is True:
        return "bottom_right"
    return causal


def run(
    q: Any,
    k: Any,
    v: Any,
    out: Any,
    *,
    lse: Any = None,
    mask: Any = None,
    alibi_slopes: Any = None,
    seqlens_q: Any = None,
    seqlens_k: Any = None,
    cu_seqlens_q: Any = None,
    cu_seqlens_k: Any = None,
    num_threads: Optional[int] = None,
    reference: bool = False,
    **options: Any,
) -> None:
    """Fills `out` (and `lse`): q, k, v, out are [batch, seq, heads, dim]
    views and the mask [batch|1, heads_q|1, seq_q|1, seq_k|1]; options are
    forward()'s scalars (scale, causal, window_*, softcap)."""
    _salience.forward(
        _arrays.for_kernel(q),
        _arrays.for_kernel(k),
        _arrays.for_kernel(v),
        out,
        lse=lse,
        mask=None if mask is None else _arrays.for_kernel(mask),
        alibi_slopes=_arrays.float32_vector("alibi_slopes", alibi_slopes),
        seqlens_q=_arrays.int32_vector("seqlens_q", seqlens_q),
        seqlens_k=_arrays.int32_vector("seqlens_k", seqlens_k),
        cu_seqlens_q=_arrays.int32_vector("cu_seqlens_q", cu_seqlens_q),
        cu_seqlens_k=_arrays.int32_vector("cu_seqlens_k", cu_seqlens_k),
        num_threads=_num_threads if num_threads is None else num_threads,
        reference=reference,
        **options,
    )


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
    num_threads: worker threads (default: set_num_threads's, else all cores).
    return_lse: also return the log-sum-exp of each row's scores, float32
        [batch, heads_q, seq_q] ([heads_q, seq_q] without a batch axis).
    out: write into this array (q's layout and shape with head_dim_v).
    reference: run the fp64 reference kernel (slow; the tests' oracle).

    A row that sees no key gets out = 0 and lse = -inf.
    """
    names = ("q", "k", "v")
    for name, x in zip(names, (q, k, v)):
        _arrays.check_array(name, x)
        _arrays.check_float32(name, x)
    _arrays.check_same_kind(names, (q, k, v))
    if layout not in ("bnhd", "bhnd"):
        raise ValueError(f"layout: expected 'bnhd' or 'bhnd', got {layout!r}")
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
    if out is None:
        shape = (batch, seq_q, heads_q, head_dim_v)
        if layout == "bhnd":
            shape = (batch, heads_q, seq_q, head_dim_v)
        out = _arrays.empty_float32(q, shape if batched else shape[1:])
    else:
        _arrays.check_array("out", out)
        _arrays.check_float32("out", out)
        if out.ndim != ranks[0]:  # type: ignore[attr-defined]
            raise ValueError(f"out: expected {ranks[0]} axes like q, got {out.ndim}")  # type: ignore[attr-defined]
    lse = _arrays.empty_float32(q, (batch, heads_q, seq_q)) if return_lse else None
    mask4 = None
    if mask is not None:
        check_mask("mask", mask)
        if mask.ndim > 4:
            raise ValueError(
                f"mask: expected at most 4 axes [batch|1, heads_q|1, seq_q|1, "
                f"seq_k|1], got shape {tuple(mask.shape)}"
            )
        mask4 = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))

    run(q4, k4, v4, logical(out), lse=lse, mask=mask4, alibi_slopes=alibi_slopes,
        seqlens_q=seqlens_q, seqlens_k=seqlens_k, cu_seqlens_q=cu_seqlens_q,
        cu_seqlens_k=cu_seqlens_k, num_threads=num_threads, reference=reference,
        scale=scale, causal=_causal_name(causal), window_left=window_left,
        window_right=window_right, window_align=window_align, softcap=softcap)

    if _arrays.needs_graph((q, k, v, mask)):
        out = _arrays.attach_forward_only(out, (q, k, v, mask))
    if lse is None:
        return out
    return out, (lse if batched else lse[0])
