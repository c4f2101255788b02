"""The backward section of bench/peers.py (--backward): the attention
backward alone, salience.scaled_dot_product_attention against torch's
scaled_dot_product_attention (the backend torch picks on the CPU: its flash
attention kernel, which has a backward) on the same tensors.

Each call is torch.autograd.grad of a forward built once outside the timed
region, with retain_graph, so only the backward is timed; both sides' outputs
and the gradients are compared before timing. FLOPs count 2.5x the
forward's (five products of the forward's size instead of two), the
convention of FlashAttention's papers; B=1, H=16, D in --head-dims, causal
and not, N from --min-seq to --max-seq (default 1024..4096 here).
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any, Callable, Dict, List

import torch
import torch.nn.functional as F

import salience

BATCH, HEADS = 1, 16


def _flops(seq: int, head_dim: int, causal: bool) -> float:
    return 2.5 * 4.0 * BATCH * HEADS * seq * seq * head_dim * (0.5 if causal else 1.0)


def _runners(seq: int, head_dim: int, causal: bool) -> Dict[str, Callable[[], Any]]:
    gen = torch.Generator().manual_seed(seq * 1000 + head_dim)
    q, k, v = (torch.randn(BATCH, HEADS, seq, head_dim, generator=gen).requires_grad_()
               for _ in range(3))
    grad = torch.randn(BATCH, HEADS, seq, head_dim, generator=gen)
    runners: Dict[str, Callable[[], Any]] = {}
    results = {}
    for peer, attention in (("salience", salience.scaled_dot_product_attention),
                            ("torch SDPA", F.scaled_dot_product_attention)):
        out = attention(q, k, v, is_causal=causal)

        def backward(out: Any = out) -> Any:
            return torch.autograd.grad(out, (q, k, v), grad, retain_graph=True)

        runners[peer] = backward
        results[peer] = backward()
    for ours, theirs in zip(results["salience"], results["torch SDPA"]):
        scale = float(theirs.abs().max())
        if float((ours - theirs).abs().max()) > 1e-4 * max(scale, 1.0):
            raise SystemExit(f"gradients disagree at N={seq}, D={head_dim}, causal={causal}")
    return runners


def run(args: argparse.Namespace, median_seconds: Callable[..., Dict[str, Any]]) -> str:
    """Times every shape with peers.py's median_seconds; returns markdown."""
    torch.set_num_threads(args.threads)
    salience.set_num_threads(args.threads)
    seqs = [n for n in (256, 512, 1024, 2048, 4096, 8192)
            if max(args.min_seq, 1024) <= n <= min(args.max_seq, 4096)]
    lines = [f"### Backward ({datetime.date.today()}, {args.threads} threads, "
             f"`python bench/peers.py --backward`)", "",
             "| D | causal | N | salience ms | torch SDPA ms | salience GFLOP/s | "
             "torch GFLOP/s | speedup |", "|---|---|---|---|---|---|---|---|"]
    for head_dim in args.head_dims:
        for causal in (False, True):
            for seq in seqs:
                runners = _runners(seq, head_dim, causal)
                ms: List[float] = [median_seconds(runners[peer], args)["seconds"] * 1e3
                                   for peer in ("salience", "torch SDPA")]
                gflop = _flops(seq, head_dim, causal) / 1e9
                lines.append(f"| {head_dim} | {'yes' if causal else 'no'} | {seq} | "
                             f"{ms[0]:.1f} | {ms[1]:.1f} | {gflop / ms[0] * 1e3:.0f} | "
                             f"{gflop / ms[1] * 1e3:.0f} | {ms[1] / ms[0]:.2f}x |")
                print(lines[-1], flush=True)
    return "\n".join(lines)
