"""transformers' attention masks as structure: what `AttentionMask` holds and
how it becomes the kernel's options.

transformers builds every mask from a mask function of absolute positions
(masking_utils): causal `kv <= q`, sliding `kv > q - window`, bidirectional
sliding `|q - kv| <= window`, and a 2-D padding mask ANDed on top. With query
row i at position q_offset + i and key j at kv_offset + j, all of them are
bands of the (i, j) plane around the diagonal j = i + offset, offset =
q_offset - kv_offset, cut by each sequence's valid keys. `mask_interface`
recognizes those functions and returns an AttentionMask holding the band and
the valid key range of each sequence (never a [q, kv] tensor); any other mask
function (packed sequences, image-token overlays, chunked attention, custom
and/or functions) is materialized by transformers' own sdpa_mask and passed
through as a bool tensor.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import numpy as np
import torch
from transformers import masking_utils

# (causal, window): the band of a recognized mask function; window None is
# unbounded.
Band = Tuple[bool, Optional[int]]


@dataclass(frozen=True)
class AttentionMask:
    """The mask of one attention call of a transformers model, as structure.

    Query row i (0 <= i < q_length) may see key j (0 <= j < kv_length) when
      causal:      j <= i + offset, and j > i + offset - window if windowed;
      bidirectional: |i + offset - j| <= window if windowed, else always;
    and key j is valid for its sequence: key_begin[b] <= j < key_end[b]
    (padding), or key_valid[b, j] where the valid keys are not one run.
    `dense` (bool [batch, 1, q_length, kv_length]) replaces all of it for a
    mask that is not a band (transformers materialized it)."""

    batch_size: int
    q_length: int
    kv_length: int
    offset: int = 0
    causal: bool = True
    window: Optional[int] = None
    key_begin: Optional[np.ndarray] = None  # int64 [batch]
    key_end: Optional[np.ndarray] = None  # int64 [batch]
    key_valid: Optional[torch.Tensor] = None  # bool [batch, kv_length]
    dense: Optional[torch.Tensor] = None

    def to_dense(self) -> torch.Tensor:
        """The mask as transformers' sdpa_mask writes it: bool [batch, 1,
        q_length, kv_length], True where the key takes part."""
        if self.dense is not None:
            return self.dense
        i = torch.arange(self.q_length)[:, None] + self.offset
        j = torch.arange(self.kv_length)[None, :]
        visible = torch.ones(self.q_length, self.kv_length, dtype=torch.bool)
        if self.causal:
            visible &= j <= i
            if self.window is not None:
                visible &= j > i - self.window
        elif self.window is not None:
            visible &= (i - j).abs() <= self.window
        valid = self.valid_keys()
        if valid is None:
            return visible.expand(self.batch_size, 1, -1, -1)
        return visible[None, None] & valid[:, None, None, :]

    def valid_keys(self) -> Optional[torch.Tensor]:
        """bool [batch, kv_length], or None when every key is valid."""
        if self.key_valid is not None:
            return self.key_valid
        if self.key_begin is None or self.key_end is None:
            return None
        j = torch.arange(self.kv_length)[None, :]
        begin = torch.from_numpy(self.key_begin)[:, None]
        end = torch.from_numpy(self.key_end)[:, None]
        return (j >= begin) & (j < end)


def _closure(function: Callable[..., Any]) -> Dict[str, Any]:
    try:
        return dict(inspect.getclosurevars(function).nonlocals)
    except (TypeError, ValueError):
        return {}


def _is_local(function: Any, qualname: str) -> bool:
    return (getattr(function, "__module__", None) == masking_utils.__name__
            and getattr(function, "__qualname__", None) == qualname)


def recognize(mask_function: Callable[..., Any]) -> Optional[Band]:
    """The band of one of transformers' standard mask functions (causal,
    bidirectional, and their sliding-window forms), or None for any other."""
    if mask_function is masking_utils.causal_mask_function:
        return True, None
    if mask_function is masking_utils.bidirectional_mask_function:
        return False, None
    if not _is_local(mask_function, "and_masks.<locals>.and_mask"):
        return None
    parts = _closure(mask_function).get("mask_functions")
    if not isinstance(parts, tuple) or len(parts) != 2:
        return None
    overlay, base = parts
    window = _closure(overlay).get("sliding_window")
    if not isinstance(window, int) or window < 1:
        return None
    if (base is masking_utils.causal_mask_function
            and _is_local(overlay, "sliding_window_overlay.<locals>.inner_mask")):
        return True, window
    if (base is masking_utils.bidirectional_mask_function and _is_local(
            overlay, "sliding_window_bidirectional_overlay.<locals>.inner_mask")):
        return False, window
    return None


def _padding(attention_mask: Optional[torch.Tensor], kv_length: int,
             kv_offset: int) -> Dict[str, Any]:
    """The valid keys of each sequence from transformers' 2-D padding mask
    (True = a real token, over positions 0 .. kv_offset + kv_length): nothing
    when all are valid, else one run [key_begin, key_end) per sequence (left
    or right padding, or both), else key_valid."""
    if attention_mask is None:
        return {}
    padding = masking_utils.prepare_padding_mask(attention_mask, kv_length, kv_offset)
    valid = padding[:, kv_offset:kv_offset + kv_length].to(torch.bool)
    if bool(valid.all()):
        return {}
    counts = valid.sum(dim=1)
    begin = torch.where(counts > 0, valid.to(torch.int8).argmax(dim=1), 0)
    end = torch.where(counts > 0, kv_length - valid.flip(1).to(torch.int8).argmax(dim=1), 0)
    if bool((end - begin == counts).all()):
        return {"key_begin": begin.numpy().astype(np.int64),
                "key_end": end.numpy().astype(np.int64)}
    return {"key_valid": valid}


def mask_interface(batch_size: int, q_length: int, kv_length: int,
                   q_offset: Any = 0, kv_offset: Any = 0,
                   mask_function: Callable[..., Any] = masking_utils.causal_mask_function,
                   attention_mask: Optional[torch.Tensor] = None,
                   local_size: Optional[int] = None, **kwargs: Any) -> AttentionMask:
    """salience's entry in transformers' AttentionMaskInterface: the
    arguments of masking_utils.sdpa_mask, an AttentionMask in return."""
    band = recognize(mask_function)
    if band is not None and local_size is not None and band[1] != local_size:
        band = None  # the caller's window disagrees with the function's
    if band is None:
        kwargs.pop("allow_is_causal_skip", None)
        kwargs.pop("allow_is_bidirectional_skip", None)
        dense = masking_utils.sdpa_mask(
            batch_size=batch_size, q_length=q_length, kv_length=kv_length,
            q_offset=q_offset, kv_offset=kv_offset, mask_function=mask_function,
            attention_mask=attention_mask, local_size=local_size,
            allow_is_causal_skip=False, allow_is_bidirectional_skip=False, **kwargs)
        return AttentionMask(batch_size, q_length, kv_length, dense=dense)
    q_offset, kv_offset = int(q_offset), int(kv_offset)
    causal, window = band
    return AttentionMask(batch_size, q_length, kv_length, offset=q_offset - kv_offset,
                         causal=causal, window=window,
                         **_padding(attention_mask, kv_length, kv_offset))


def band_options(q_length: int, key_lengths: Iterable[int], offset: int, causal: bool,
                 window: Optional[int]) -> Optional[Dict[str, Any]]:
    """The kernel's causal/window options for a band (see AttentionMask) in a
    call whose sequences have key_lengths valid keys each (any order,
    repeats allowed), or None where the options cannot say it. The kernel
    anchors its diagonal at i (top_left) or at i + k_len - q_len of each
    sequence (bottom_right) and takes window bounds that are >= 0."""
    # Sequences without keys give 0 under any band: they do not constrain it.
    bottom_right = all(int(length) - q_length == offset
                       for length in set(key_lengths) if length > 0)
    if causal:
        if window is None:
            if offset == 0:
                return {"causal": "top_left"}
            if bottom_right:
                return {"causal": "bottom_right"}
            if offset > 0:
                return {"window_align": "top_left", "window_right": offset}
            return None
        # Visible: i + offset - window < j <= i + offset.
        if offset == 0:
            return {"causal": "top_left", "window_align": "top_left",
                    "window_left": window - 1}
        if bottom_right:
            return {"causal": "bottom_right", "window_align": "bottom_right",
                    "window_left": window - 1}
        if 0 < offset <= window - 1:
            return {"window_align": "top_left", "window_left": window - 1 - offset,
                    "window_right": offset}
        return None
    if window is None:
        return {}
    # Visible: i + offset - window <= j <= i + offset + window.
    if -window <= offset <= window:
        return {"window_align": "top_left", "window_left": window - offset,
                "window_right": window + offset}
    if bottom_right:
        return {"window_align": "bottom_right", "window_left": window,
                "window_right": window}
    return None
