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
from typing import Any, Optional, Sequence

import numpy as np

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
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


def check_same_kind(names: Sequence[str], arrays: Sequence[Any]) -> None:
    """TypeError unless the arrays are all torch tensors or all NumPy arrays."""
    kinds = {is_torch(x) for x in arrays if x is not None}
    if len(kinds) > 1:
        described = ", ".join(
            f"{n}: {'torch.Tensor' if is_torch(x) else 'numpy.ndarray'}"
            for n, x in zip(names, arrays)
            if x is not None
        )
        raise TypeError(
            f"expected all torch tensors or all NumPy arrays, got {described}"
        )


def for_kernel(x: Any) -> Any:
    """`x` as the C++ module takes it: detached from autograd (no copy); a
    NumPy view with negative strides (x[::-1]) or strides that are no multiple
    of the item size, which DLPack cannot describe, becomes a contiguous copy.
    """
    if is_torch(x):
        return x.detach() if x.requires_grad else x
    if any(s < 0 or s % x.itemsize for s in x.strides):
        return np.ascontiguousarray(x)
    return x


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


def _to_numpy(name: str, x: Any) -> np.ndarray:
    if is_torch(x):
        check_array(name, x)
        return x.detach().numpy()  # type: ignore[no-any-return]
    return np.asarray(x)


def int32_vector(name: str, x: Any) -> Optional[np.ndarray]:
    """A 1-D contiguous int32 copy of an index array (a tensor, an array or a
    sequence of ints), or None; small, so a copy costs nothing."""
    if x is None:
        return None
    values = _to_numpy(name, x)
    if values.ndim != 1:
        raise ValueError(
            f"{name}: expected a 1-D array of integers, got shape {tuple(values.shape)}"
        )
    if values.dtype.kind not in "iu":
        raise TypeError(f"{name}.dtype: expected an integer type (int32), got {values.dtype}")
    if values.size and (values.min() < _INT32_MIN or values.max() > _INT32_MAX):
        raise ValueError(f"{name}: values must fit in int32, got {values.min()}..{values.max()}")
    return np.ascontiguousarray(values, dtype=np.int32)


def required_int32_vector(name: str, x: Any) -> np.ndarray:
    """int32_vector for an argument that has no default."""
    values = int32_vector(name, x)
    if values is None:
        raise TypeError(f"{name}: expected an int32 array, got None")
    return values


def float32_vector(name: str, x: Any) -> Optional[np.ndarray]:
    """The values of a float array (any shape, row-major) as contiguous
    float32, or None."""
    if x is None:
        return None
    values = _to_numpy(name, x)
    if values.dtype.kind != "f":
        raise TypeError(f"{name}.dtype: expected a floating type (float32), got {values.dtype}")
    return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)


def needs_graph(arrays: Sequence[Any]) -> bool:
    """True when torch would record autograd history for these inputs."""
    torch = _torch()
    return (
        torch is not None
        and torch.is_grad_enabled()
        and any(is_torch(x) and x.requires_grad for x in arrays if x is not None)
    )
