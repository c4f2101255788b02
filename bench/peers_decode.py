"""The decode section of bench/peers.py (--decode): one new token per
sequence against a KV cache, salience.flash_attn_with_kvcache and
salience.scaled_dot_product_attention (called as torch is, one sequence at
a time) against torch's scaled_dot_product_attention on the same cache
tensors.

Shapes: B=1, 32 query heads over 8 kv heads (GQA), D=128, a cache of 32768
tokens in float32 and bfloat16 (256 and 128 MiB: several times any L3, so
every call reads DRAM), and a batch of 16 ragged sequences (512..8192
tokens; torch runs them one at a time, salience in one call). The figure of
merit is cache bytes read per second: decode does ~2 FLOPs per fp32 byte
and is bound by memory, not arithmetic.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any, Callable, Dict, List, Tuple

import torch
import torch.nn.functional as F

import salience

HEADS_Q, HEADS_KV, HEAD_DIM = 32, 8, 128


def _shapes() -> List[Tuple[str, List[int], torch.dtype]]:
    generator = torch.Generator().manual_seed(1)
    ragged = torch.randint(512, 8193, (16,), generator=generator).tolist()
    return [("B1 N32768 fp32", [32768], torch.float32),
            ("B1 N32768 bf16", [32768], torch.bfloat16),
            ("B16 ragged bf16", ragged, torch.bfloat16)]


def _runners(lengths: List[int], dtype: torch.dtype,
             layout: str) -> Tuple[Dict[str, Callable[[], Any]], float]:
    batch, longest = len(lengths), max(lengths)
    # The cache in memory as [B, N, H, D] (flash-attn's order) or [B, H, N, D]
    # (torch's and Hugging Face's); both peers get views of the same tensors
    # (no copy): salience takes [B, N, H, D] views, torch [B, H, N, D].
    def cache() -> torch.Tensor:
        if layout == "bhnd":
            return torch.randn(batch, HEADS_KV, longest, HEAD_DIM).to(dtype).transpose(1, 2)
        return torch.randn(batch, longest, HEADS_KV, HEAD_DIM).to(dtype)

    k_cache, v_cache = cache(), cache()
    q = torch.randn(batch, 1, HEADS_Q, HEAD_DIM).to(dtype)
    seqlens = torch.tensor(lengths, dtype=torch.int32)
    k_t, v_t, q_t = k_cache.transpose(1, 2), v_cache.transpose(1, 2), q.transpose(1, 2)

    def run_salience() -> Any:
        return salience.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=seqlens)

    def per_sequence(sdpa: Callable[..., Any]) -> Callable[[], Any]:
        return lambda: [sdpa(q_t[b:b + 1], k_t[b:b + 1, :, :n], v_t[b:b + 1, :, :n],
                             enable_gqa=True) for b, n in enumerate(lengths)]

    bytes_read = float(sum(lengths)) * HEADS_KV * HEAD_DIM * 2 * k_cache.element_size()
    # "salience SDPA": the drop-in, called as torch is (a decode step made
    # through scaled_dot_product_attention runs salience's decode kernel).
    return {"salience": run_salience,
            "salience SDPA": per_sequence(salience.scaled_dot_product_attention),
            "torch SDPA": per_sequence(F.scaled_dot_product_attention)}, bytes_read


def run(args: argparse.Namespace, median_seconds: Callable[..., Dict[str, Any]]) -> str:
    """Times every shape with peers.py's median_seconds; returns markdown."""
    torch.set_num_threads(args.threads)
    salience.set_num_threads(args.threads)
    layout = args.cache_layout
    command = "python bench/peers.py --decode" + (" --cache-layout bhnd" if layout == "bhnd" else "")
    lines = [f"### Decode against a KV cache ({datetime.date.today()}, "
             f"{args.threads} threads, cache stored {layout.upper()}, `{command}`)", "",
             "| shape | peer | median ms | cache GB/s |", "|---|---|---|---|"]
    for name, lengths, dtype in _shapes():
        runners, bytes_read = _runners(lengths, dtype, layout)
        for peer, runner in runners.items():
            seconds = median_seconds(runner, args)["seconds"]
            lines.append(f"| {name} | {peer} | {seconds * 1e3:.2f} | "
                         f"{bytes_read / seconds * 1e-9:.1f} |")
    return "\n".join(lines)
