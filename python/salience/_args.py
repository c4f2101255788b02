"""Checks of the non-tensor arguments: scalars and index arrays.

The C++ module takes fixed-width types (int32 index arrays, int64 windows,
int thread counts, float scales), which nanobind would refuse with a dump
of the whole signature, or numpy would narrow silently. Every entry point
passes its scalars and index arrays through these first, so that a bad
value raises TypeError (wrong type) or ValueError (out of range) naming the
argument and what was expected, and nothing is truncated.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Optional

import numpy as np

from salience import _arrays

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__module__}.{type(value).__qualname__} {text}"


def integer(name: str, value: Any, low: int, high: int) -> int:
    """`value` as a Python int: an int, a NumPy integer or a one-element
    integer tensor (anything with __index__), not a bool or a float, within
    [low, high]."""
    if type(value) is int:  # the usual case, without the checks below
        number = value
    elif isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an integer, got {_describe(value)}")
    else:
        try:
            number = operator.index(value)
        except TypeError:
            raise TypeError(f"{name}: expected an integer, got {_describe(value)}") from None
    if not low <= number <= high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {number}")
    return number


def optional_integer(name: str, value: Any, low: int, high: int) -> Optional[int]:
    return None if value is None else integer(name, value, low, high)


def real(name: str, value: Any, finite: bool = False) -> float:
    """`value` as a Python float: an int or a float (Python or NumPy), not a
    bool or a string; with `finite`, not inf or NaN. Other ranges are the
    library's to check, with messages naming the argument."""
    if type(value) is not float and (isinstance(value, (bool, np.bool_))
                                     or not isinstance(value, numbers.Real)):
        raise TypeError(f"{name}: expected a real number, got {_describe(value)}")
    number = float(value)
    if finite and not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite value, got {number}")
    return number


def optional_real(name: str, value: Any, finite: bool = False) -> Optional[float]:
    return None if value is None else real(name, value, finite)


def boolean(name: str, value: Any) -> bool:
    """True or False (Python's or NumPy's); 0, 1, None and strings raise."""
    if value is True or value is False:
        return value  # type: ignore[no-any-return]
    if not isinstance(value, np.bool_):
        raise TypeError(f"{name}: expected True or False, got {_describe(value)}")
    return bool(value)


def window(value: Any) -> tuple[int, int]:
    """flash-attn's window_size (left, right): two integers, -1 unbounded."""
    try:
        left, right = value
    except (TypeError, ValueError):
        raise ValueError(f"window_size: expected (left, right), got {value!r}") from None
    return (integer("window_size[0]", left, INT64_MIN, INT64_MAX),
            integer("window_size[1]", right, INT64_MIN, INT64_MAX))


def num_threads(value: Any) -> int:
    """A thread count: 0 (OpenMP's default) or more, an int of C."""
    return integer("num_threads", value, 0, INT32_MAX)


def index_array(name: str, x: Any, ndim: int = 1, axes: str = "") -> np.ndarray:
    """A contiguous int32 copy of an index array: a tensor, a NumPy array or
    a (nested) sequence of ints, of any integer dtype; small, so a copy costs
    nothing. A value outside int32 is an error, never truncated."""
    values = _arrays.to_numpy(name, x)
    if values.ndim != ndim:
        shape = axes or f"a {ndim}-D array of integers"
        raise ValueError(f"{name}: expected {shape}, got shape {list(values.shape)}")
    if values.dtype.kind not in "iu":
        raise TypeError(f"{name}.dtype: expected an integer type (int32), got {values.dtype}")
    fits = values.dtype.itemsize < 4 or values.dtype == np.int32  # by its type
    if values.size and not fits:
        low, high = int(values.min()), int(values.max())
        if low < INT32_MIN or high > INT32_MAX:
            bad = low if low < INT32_MIN else high
            raise ValueError(f"{name}: expected values in int32's range "
                             f"[{INT32_MIN}, {INT32_MAX}], got {bad}")
    return np.ascontiguousarray(values, dtype=np.int32)


def optional_index_array(name: str, x: Any) -> Optional[np.ndarray]:
    return None if x is None else index_array(name, x)


def cu_seqlens(name: str, x: Any) -> np.ndarray:
    """Offsets of a packed batch, [num_seqs + 1] int32: at least 2 entries
    (an empty one would be no varlen batch at all)."""
    if x is None:
        raise TypeError(f"{name}: expected an int32 array of offsets, got None")
    values = index_array(name, x)
    if values.size < 2:
        raise ValueError(f"{name}: expected at least 2 entries (num_seqs + 1 offsets, "
                         f"starting at 0), got {values.size}")
    return values


def optional_cu_seqlens(name: str, x: Any) -> Optional[np.ndarray]:
    return None if x is None else cu_seqlens(name, x)


def float32_vector(name: str, x: Any) -> Optional[np.ndarray]:
    """The values of a float array (any shape, row-major) as contiguous
    float32, or None."""
    if x is None:
        return None
    values = _arrays.to_numpy(name, x)
    if values.dtype.kind != "f":
        raise TypeError(f"{name}.dtype: expected a floating type (float32), got {values.dtype}")
    return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
