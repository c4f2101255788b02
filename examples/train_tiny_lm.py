"""Trains a tiny character-level transformer twice, from the same seed and on
the same batches: once with salience's attention (forward and backward), once
with torch's scaled_dot_product_attention. It prints both loss curves, which
track each other (they differ only by float32 rounding), and the time per
training step of each.

    python examples/train_tiny_lm.py --steps 300
    python examples/train_tiny_lm.py --steps 100 --dropout 0.1 --threads 4

The text is the opening of Shakespeare's Coriolanus (public domain), 64 KB of
examples/data/coriolanus.txt, taken from the tinyshakespeare corpus of
karpathy/char-rnn. With --dropout the two runs draw different dropout masks
(salience's come from its own Philox stream), so their curves then agree in
trend, not step by step.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import salience

DATA = pathlib.Path(__file__).resolve().parent / "data" / "coriolanus.txt"

# attention(q, k, v, dropout_p) on [batch, heads, seq, head_dim], causal.
Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def salience_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       dropout_p: float) -> torch.Tensor:
    return salience.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)


def torch_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    dropout_p: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a GELU MLP."""

    def __init__(self, d_model: int, heads: int, attention: Attention, dropout: float) -> None:
        super().__init__()
        self.heads, self.attention, self.dropout = heads, attention, dropout
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d_model, dim=-1)
        # [batch, seq, heads, head_dim] viewed as [batch, heads, seq, head_dim]
        q, k, v = (t.view(batch, seq, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        attended = self.attention(q, k, v, p).transpose(1, 2).reshape(batch, seq, d_model)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab: int, context: int, d_model: int, heads: int, layers: int,
                 attention: Attention, dropout: float) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, d_model)
        self.position = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads, attention, dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1])
        x = self.token(tokens) + self.position(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # type: ignore[no-any-return]


@dataclass
class Run:
    losses: List[float]
    step_seconds: List[float]

    def median_step_ms(self, skip: int = 3) -> float:
        times = self.step_seconds[skip:] or self.step_seconds
        return 1000 * statistics.median(times)


def encode(text: str) -> torch.Tensor:
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    return torch.tensor([index[c] for c in text], dtype=torch.int64)


def train(tokens: torch.Tensor, vocab: int, attention: Attention, args: argparse.Namespace) -> Run:
    """Trains from args.seed: the same initial weights and the same batches
    for every attention function."""
    torch.manual_seed(args.seed)
    model = TinyLM(vocab, args.context, args.d_model, args.heads, args.layers, attention,
                   args.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    batches = torch.Generator().manual_seed(args.seed + 1)
    run = Run([], [])
    for _ in range(args.steps):
        starts = torch.randint(0, len(tokens) - args.context - 1, (args.batch,), generator=batches)
        window = torch.stack([tokens[s:s + args.context + 1] for s in starts.tolist()])
        inputs, targets = window[:, :-1], window[:, 1:]
        begin = time.perf_counter()
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        run.step_seconds.append(time.perf_counter() - begin)
        run.losses.append(loss.item())
    return run


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dropout", type=float, default=0.0, help="attention dropout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and salience threads (0: their defaults)")
    parser.add_argument("--print-every", type=int, default=25)
    parser.add_argument("--data", type=pathlib.Path, default=DATA)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Run]:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        salience.set_num_threads(args.threads)
    text = args.data.read_text(encoding="utf-8")
    tokens = encode(text)
    vocab = int(tokens.max()) + 1
    print(f"{args.data.name}: {len(text)} characters, vocabulary {vocab}; "
          f"{args.layers} layers, d_model {args.d_model}, {args.heads} heads, "
          f"context {args.context}, batch {args.batch}, {args.steps} steps")
    runs = {name: train(tokens, vocab, attention, args)
            for name, attention in (("salience", salience_attention), ("torch", torch_attention))}
    ours, theirs = runs["salience"], runs["torch"]
    print(f"{'step':>6} {'salience':>10} {'torch sdpa':>10} {'|diff|':>9}")
    for step in range(args.steps):
        if step % args.print_every == 0 or step == args.steps - 1:
            a, b = ours.losses[step], theirs.losses[step]
            print(f"{step:>6} {a:>10.4f} {b:>10.4f} {abs(a - b):>9.2e}")
    print(f"time per step (median): salience {ours.median_step_ms():.1f} ms, "
          f"torch sdpa {theirs.median_step_ms():.1f} ms "
          f"({salience.get_num_threads()} salience threads, {torch.get_num_threads()} torch threads)")
    uniform = math.log(vocab)
    print(f"loss: {ours.losses[0]:.3f} -> {ours.losses[-1]:.3f} "
          f"(uniform guess: {uniform:.3f})")
    return runs


if __name__ == "__main__":
    main()
