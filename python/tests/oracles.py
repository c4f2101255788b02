"""Independent fp64 oracles for the tests, written in torch from the
documented semantics (not from salience's code), and the error measures.

flash_reference follows flash-attn's documentation: bottom-right causal
alignment, window_size (left, right) around i + seqlen_k - seqlen_q, ALiBi
-slope * |i + seqlen_k - seqlen_q - j|, tanh soft-capping, and a row that
sees no key giving out = 0, lse = -inf.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

# Relative errors below a few fp32 ulps count as equal: where torch's own
# error is 0 (one key, a constant row), "2x torch's error" would demand
# bit-equality with a different summation order.
FP32_EPS = float(np.finfo(np.float32).eps)
FP32_FLOOR = 4 * FP32_EPS


def norm_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """||result - reference|| / ||reference|| (Frobenius; 0 when empty): the
    error of the whole tensor, stable from draw to draw."""
    result = torch.as_tensor(result).double()
    reference = torch.as_tensor(reference).double()
    if reference.numel() == 0:
        return 0.0
    scale = max(reference.norm().item(), 1e-300)
    return (result - reference).norm().item() / scale


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    """max |result - reference| / max |reference| (0 when empty): the
    worst element, for tolerances on small or structured cases."""
    result = torch.as_tensor(result).double()
    reference = torch.as_tensor(reference).double()
    if reference.numel() == 0:
        return 0.0
    scale = max(reference.abs().max().item(), 1e-30)
    return (result - reference).abs().max().item() / scale


def flash_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: Optional[float] = None,
    causal: bool = False,
    window: Sequence[int] = (-1, -1),
    softcap: float = 0.0,
    alibi: Optional[torch.Tensor] = None,
    k_len: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """fp64 attention of one batch of sequences in flash-attn's layout.

    q [B, Lq, H, D], k [B, Lk, Hk, D], v [B, Lk, Hk, Dv]; alibi [H] or [B, H];
    k_len: keys 0..k_len-1 are valid (a KV cache's length), default Lk.
    Returns out [B, Lq, H, Dv] and lse [B, H, Lq] in fp64.
    """
    q, k, v = q.double(), k.double(), v.double()
    batch, seq_q, heads, head_dim = q.shape
    seq_k = k.shape[1] if k_len is None else k_len
    k, v = k[:, :seq_k], v[:, :seq_k]
    group = heads // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    scores = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    if softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    i = torch.arange(seq_q)[:, None]
    j = torch.arange(seq_k)[None, :]
    anchor = i + seq_k - seq_q
    if alibi is not None:
        slopes = alibi.double().reshape(-1, heads) if alibi.dim() == 2 else alibi.double()[None]
        scores = scores - slopes[:, :, None, None] * (anchor - j).abs()
    visible = torch.ones(seq_q, seq_k, dtype=torch.bool)
    if causal:
        visible &= j <= anchor
    if window[0] >= 0:
        visible &= j >= anchor - window[0]
    if window[1] >= 0:
        visible &= j <= anchor + window[1]
    scores = scores.masked_fill(~visible, -math.inf)
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse[..., None]).nan_to_num(0.0)
    out = torch.einsum("bhij,bjhd->bihd", weights, v)
    return out, lse


def varlen_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: Sequence[int],
    cu_k: Sequence[int],
    alibi: Optional[torch.Tensor] = None,
    **options: object,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """flash_reference per packed sequence: q [total_q, H, D] -> out
    [total_q, H, Dv] and lse [H, total_q]; rows past cu_q[-1] give 0/-inf."""
    out = torch.zeros(q.shape[0], q.shape[1], v.shape[2], dtype=torch.float64)
    lse = torch.full((q.shape[1], q.shape[0]), -math.inf, dtype=torch.float64)
    for s in range(len(cu_q) - 1):
        qs, qe, ks, ke = cu_q[s], cu_q[s + 1], cu_k[s], cu_k[s + 1]
        slopes = None if alibi is None else (alibi[s] if alibi.dim() == 2 else alibi)
        o, l = flash_reference(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke],
                               alibi=slopes, **options)  # type: ignore[arg-type]
        out[qs:qe], lse[:, qs:qe] = o[0], l[0]
    return out, lse


def sdpa_reference(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: Optional[torch.Tensor] = None,
    is_causal: bool = False,
    scale: Optional[float] = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """torch's documented SDPA semantics in fp64 with plain matmuls: leading
    axes broadcast, GQA repeats key/value heads, a causal mask (top-left) and
    attn_mask both apply, and a row with no visible key gives 0."""
    q, k, v = query.double(), key.double(), value.double()
    if enable_gqa and q.dim() >= 3 and q.shape[-3] != k.shape[-3]:
        group = q.shape[-3] // k.shape[-3]
        k = k.repeat_interleave(group, dim=-3)
        v = v.repeat_interleave(group, dim=-3)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-1, -2)) * scale
    seq_q, seq_k = scores.shape[-2:]
    if is_causal:
        causal = torch.ones(seq_q, seq_k, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, -math.inf)
        else:
            scores = scores + attn_mask.double()
    row_max = scores.amax(dim=-1, keepdim=True).nan_to_num(0.0, neginf=0.0)
    weights = torch.exp(scores - row_max)
    total = weights.sum(dim=-1, keepdim=True)
    weights = torch.where(total > 0, weights / total, torch.zeros_like(weights))
    return weights @ v
