"""Rotary position embedding (RoPE) as flash_attn_with_kvcache applies it.

flash-attn rotates the new keys and the queries inside its kernel, in fp32
from the elements' dtype, and rounds the rotated values back to that dtype
before it uses them. Here the same rotation runs before the decode call:
on the queries (a new array, q's dtype) and on the new keys (a new array,
rounded once to the cache's dtype) before they are appended, which gives
what flash-attn's kernel computes.

With cos/sin [seqlen_ro, rotary_dim / 2], the first rotary_dim features of
a row at position p turn by the angles of row p; the rest pass unchanged:

  interleaved (GPT-J):   pairs (x[2i], x[2i + 1])
  not (GPT-NeoX):        pairs (x[i], x[i + rotary_dim / 2])
  (a, b) -> (a cos_i - b sin_i, a sin_i + b cos_i)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from salience import _arrays


def _float32(x: Any) -> Any:
    if _arrays.is_torch(x):
        return _arrays.resolved(x.detach()).float()
    return np.asarray(x, dtype=np.float32)


def rotate(x: Any, cos: Any, sin: Any, positions: np.ndarray, interleaved: bool,
           dtype: Any) -> Any:
    """x [batch, seq, heads, dim] rotated at positions [batch, seq] (ints
    indexing the rows of cos and sin), computed in float32 and returned as
    a new array of `dtype` (torch or NumPy, x's kind)."""
    half = cos.shape[1]
    dim = 2 * half
    values, cos32, sin32 = _float32(x), _float32(cos), _float32(sin)
    if _arrays.is_torch(x):
        torch = _arrays._torch()
        index = torch.from_numpy(positions.astype(np.int64))
        c, s = cos32[index][:, :, None, :], sin32[index][:, :, None, :]
        stack, concat = torch.stack, torch.cat
    else:
        c, s = cos32[positions][:, :, None, :], sin32[positions][:, :, None, :]
        stack, concat = np.stack, np.concatenate
    if interleaved:
        first, second = values[..., 0:dim:2], values[..., 1:dim:2]
    else:
        first, second = values[..., :half], values[..., half:dim]
    turned_first = first * c - second * s
    turned_second = first * s + second * c
    if interleaved:
        turned = stack((turned_first, turned_second), -1).reshape(
            tuple(values.shape[:-1]) + (dim,))
    else:
        turned = concat((turned_first, turned_second), -1)
    result = concat((turned, values[..., dim:]), -1)
    return result.to(dtype) if _arrays.is_torch(x) else result.astype(dtype)
