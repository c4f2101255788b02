"""The two kinds of array salience takes: torch tensors and NumPy arrays.

The C++ module reads either through DLPack without a copy. What the entry
points need beyond that (argument checks with messages in the caller's
terms, broadcasting views, allocation of the output in the input's kind) is
written here once for both libraries. torch is never imported by salience:
a torch tensor can only arrive if the caller imported torch already, so
`sys.modules` tells which kind an argument is.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np

_HALF_DTYPES = {"torch.float16", "torch.bfloat16", "float16", "bfloat16"}


def _torch() -> Any:
    return sys.modules.get("torch")


_tensor_type: Any = None  # torch.Tensor once torch is imported


def is_torch(x: Any) -> bool:
    global _tensor_type
    if _tensor_type is None:
        torch = _torch()
        if torch is None:
            return False
        _tensor_type = torch.Tensor
    return isinstance(x, _tensor_type)


def check_array(name: str, x: Any) -> None:
    """TypeError unless `x` is a torch tensor or a NumPy array; ValueError
    unless it lives on the CPU."""
    if is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(
                f"{name} is on device '{x.device}': salience runs on the CPU "
                f"(move the tensor with .cpu())"
            )
        return
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name}: expected a torch.Tensor or a numpy.ndarray, "
            f"got {type(x).__module__}.{type(x).__qualname__}"
        )


def dtype_name(x: Any) -> str:
    """'torch.float32' for a tensor, 'float32' for a NumPy array."""
    return str(x.dtype)


def is_float32(x: Any) -> bool:
    return dtype_name(x) in ("torch.float32", "float32")


def is_bool(x: Any) -> bool:
    return dtype_name(x) in ("torch.bool", "bool")


def check_float32(name: str, x: Any) -> None:
    """TypeError naming the dtype unless `x` holds float32."""
    if is_float32(x):
        return
    dtype = dtype_name(x)
    if dtype in _HALF_DTYPES:
        raise TypeError(
            f"{name}.dtype is {dtype}: salience computes in float32 only for now "
            f"(bfloat16 and float16 kernels are planned); convert the input "
            f"with .float() or .astype(numpy.float32)"
        )
    raise TypeError(f"{name}.dtype: expected float32, got {dtype}")


_ATTENTION_DTYPES = {"torch.float32", "float32", "torch.bfloat16", "torch.float16", "float16"}


def check_attention_dtype(name: str, x: Any) -> None:
    """TypeError naming the dtype unless `x` holds float32, bfloat16 or
    float16: the types the attention kernels read and write (they
    accumulate in float32 whatever the input)."""
    if dtype_name(x) in _ATTENTION_DTYPES:
        return
    raise TypeError(
        f"{name}.dtype: expected float32, bfloat16 or float16, got {dtype_name(x)}"
    )


def empty_like_dtype(like: Any, shape: Sequence[int]) -> Any:
    """An uninitialised contiguous array of `like`'s kind and dtype (the
    output of attention on `like`'s dtype)."""
    if is_torch(like):
        return _torch().empty(tuple(shape), dtype=like.dtype)
    return np.empty(tuple(shape), dtype=like.dtype)


def is_array(x: Any) -> bool:
    return is_torch(x) or isinstance(x, np.ndarray)


def check_same_kind(names: Sequence[str], arrays: Sequence[Any]) -> None:
    """TypeError unless the array arguments of a call (torch tensors and
    NumPy arrays; None and Python sequences of indices are not arrays) are
    all torch tensors or all NumPy arrays."""
    given = []
    for name, x in zip(names, arrays):
        if x is None:
            continue
        if is_torch(x):
            given.append((name, "torch.Tensor"))
        elif isinstance(x, np.ndarray):
            given.append((name, "numpy.ndarray"))
    if len({kind for _, kind in given}) > 1:
        described = ", ".join(f"{n}: {kind}" for n, kind in given)
        raise TypeError(
            f"expected all torch tensors or all NumPy arrays, got {described}"
        )


def resolved(x: Any) -> Any:
    """A torch tensor without the lazy negative or conjugate bit (a view such
    as x.conj().imag reads as -x through DLPack, which ignores the bit): a
    copy when a bit is set, else `x` itself."""
    if is_torch(x) and (x.is_neg() or x.is_conj()):
        return x.resolve_conj().resolve_neg()
    return x


def for_kernel(x: Any) -> Any:
    """`x` as the C++ module reads it: detached from autograd (no copy),
    without a negative or conjugate bit (a copy only when one is set); a
    NumPy view with negative strides (x[::-1]) or strides that are no
    multiple of the item size, which DLPack cannot describe, becomes a
    contiguous copy."""
    if is_torch(x):
        return resolved(x.detach() if x.requires_grad else x)
    if any(s < 0 or s % x.itemsize for s in x.strides):
        return np.ascontiguousarray(x)
    return x


def check_writable(name: str, x: Any) -> None:
    """ValueError unless the C++ module can write into `x` in place: a
    NumPy array that is writable, a tensor without a negative or conjugate
    bit (the kernel would store the values without the sign the bit
    implies)."""
    if is_torch(x):
        if x.is_neg() or x.is_conj():
            raise ValueError(
                f"{name}: expected a tensor salience can write into, got one with the "
                f"{'negative' if x.is_neg() else 'conjugate'} bit set (a lazy view such "
                f"as x.conj().imag); pass a plain tensor")
        return
    if not x.flags.writeable:
        raise ValueError(
            f"{name}: expected a writable array, got a read-only one (a "
            f"np.broadcast_to view, or flags.writeable is False)")
    if any(s < 0 or s % x.itemsize for s in x.strides):
        raise ValueError(
            f"{name}: expected strides DLPack can describe (non-negative multiples of "
            f"the item size), got {x.strides} bytes; pass np.ascontiguousarray({name})")


def check_grad_for_write(name: str, x: Any, inputs: Sequence[Any] = ()) -> None:
    """What torch enforces for a write into `x` (an out= argument, or a KV
    cache appended to) that autograd cannot record: RuntimeError while
    grad mode is on if `x` requires grad (a leaf would lose its gradient,
    a non-leaf would silently drop the write from the graph) or, for out=,
    if an input requires grad, as torch's out= functions do."""
    torch = _torch()
    if torch is None or not is_torch(x) or not torch.is_grad_enabled():
        return
    if x.requires_grad:
        what = "a leaf tensor" if x.is_leaf else "a tensor"
        raise RuntimeError(
            f"{name}: {what} that requires grad cannot be written in place by salience "
            f"(autograd cannot record it); write under torch.no_grad() or pass a "
            f"tensor that does not require grad")
    if any(is_torch(t) and t.requires_grad for t in inputs):
        raise RuntimeError(
            f"{name}: functions with out=... arguments don't support automatic "
            f"differentiation, but one of the arguments requires grad (as in torch); "
            f"leave out= or run under torch.no_grad()")


def mark_written(*arrays: Any) -> None:
    """Bumps the version counter of tensors written in place, as torch's
    in-place operations do, so that autograd refuses a graph that saved
    their old values instead of computing a wrong gradient."""
    torch = _torch()
    for x in arrays:
        if is_torch(x):
            torch.autograd.graph.increment_version(x)


def broadcast_to(x: Any, shape: Sequence[int]) -> Any:
    """A read-only view of `x` broadcast to `shape` (stride 0 on new axes)."""
    if tuple(x.shape) == tuple(shape):
        return x
    if is_torch(x):
        return x.expand(tuple(shape))
    return np.broadcast_to(x, tuple(shape))


def empty_float32(like: Any, shape: Sequence[int]) -> Any:
    """An uninitialised contiguous float32 array of `like`'s kind."""
    if is_torch(like):
        return _torch().empty(tuple(shape), dtype=_torch().float32)
    return np.empty(tuple(shape), dtype=np.float32)


def to_numpy(name: str, x: Any) -> np.ndarray:
    """A NumPy view of a tensor (its values: the negative bit resolved), an
    array as it is, or a sequence as an array."""
    if is_torch(x):
        check_array(name, x)
        return resolved(x.detach()).numpy()  # type: ignore[no-any-return]
    return np.asarray(x)


def needs_graph(arrays: Sequence[Any]) -> bool:
    """True when torch would record autograd history for these inputs."""
    torch = _torch()
    return (
        torch is not None
        and torch.is_grad_enabled()
        and any(is_torch(x) and x.requires_grad for x in arrays if x is not None)
    )
