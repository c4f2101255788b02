"""salience.scaled_dot_product_attention against torch 2.13's.

The battery draws shapes, broadcasts, masks, GQA, causal, scale and memory
layouts at random (seeded); in each case salience's error must be within 2x
of torch's own fp32 error (relative Frobenius norm, with a floor of 4 fp32
ulps), both measured against an fp64 evaluation of the definition.
"""

from __future__ import annotations

import inspect
import math
import random
import tracemalloc
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import salience
from oracles import FP32_FLOOR, norm_error, relative_error, sdpa_reference

Shape = Tuple[int, ...]


@dataclass
class Case:
    q_shape: Shape
    k_shape: Shape
    v_shape: Shape
    mask_shape: Optional[Shape] = None
    mask_kind: str = "none"  # none, bool, float
    is_causal: bool = False
    scale: Optional[float] = None
    enable_gqa: bool = False
    layouts: List[str] = field(default_factory=lambda: ["contiguous"] * 3)

    def __str__(self) -> str:
        parts = [f"q{list(self.q_shape)}", f"k{list(self.k_shape)}", f"v{list(self.v_shape)}"]
        if self.mask_kind != "none":
            parts.append(f"{self.mask_kind}mask{list(self.mask_shape or ())}")
        if self.is_causal:
            parts.append("causal")
        if self.enable_gqa:
            parts.append("gqa")
        if self.scale is not None:
            parts.append(f"scale{self.scale:.2f}")
        parts += sorted({l for l in self.layouts if l != "contiguous"})
        return "-".join(parts)


def _draw_case(r: random.Random) -> Case:
    seq_q = r.choice([1, 2, 5, 17, 33, 64, 100, 127])
    seq_k = seq_q if r.random() < 0.4 else r.choice([1, 3, 16, 31, 64, 129])
    head_dim = r.choice([1, 8, 13, 64, 80, 128])
    head_dim_v = head_dim if r.random() < 0.7 else r.choice([5, 32])
    n_lead = r.choice([0, 1, 2, 2, 2, 3])
    heads = r.choice([1, 2, 4, 6])
    lead = [r.choice([1, 2, 3]) for _ in range(n_lead - 1)] + [heads] * (n_lead > 0)
    heads_kv = heads
    gqa = n_lead >= 1 and heads > 1 and r.random() < 0.35
    if gqa:
        heads_kv = r.choice([d for d in range(1, heads) if heads % d == 0])

    def broadcast_some(dims: List[int], keep_last: bool) -> List[int]:
        # Size 1 on some batch axes: torch broadcasts them against the others.
        out = list(dims)
        for axis in range(len(out) - (1 if keep_last else 0)):
            if r.random() < 0.2:
                out[axis] = 1
        return out

    q_lead = broadcast_some(lead, keep_last=gqa)
    kv_lead = lead[:-1] + [heads_kv] if lead else []
    k_lead = broadcast_some(kv_lead, keep_last=gqa)
    # enable_gqa without grouping (equal heads) must change nothing.
    same_heads = n_lead > 0 and q_lead[-1] == k_lead[-1]
    case = Case(tuple(q_lead) + (seq_q, head_dim), tuple(k_lead) + (seq_k, head_dim),
                tuple(k_lead) + (seq_k, head_dim_v),
                enable_gqa=gqa or (same_heads and r.random() < 0.2))
    case.mask_kind = r.choice(["none", "bool", "float", "bool", "float"])
    if case.mask_kind != "none":
        if gqa:
            out_lead = list(np.broadcast_shapes(tuple(q_lead[:-1]), tuple(k_lead[:-1]))) + [heads]
        else:
            out_lead = list(np.broadcast_shapes(tuple(q_lead), tuple(k_lead)))
        weights = out_lead + [seq_q, seq_k]
        # torch takes masks of 2 or more axes.
        kept = weights[r.randint(0, len(weights) - 2):] if r.random() < 0.5 else weights
        case.mask_shape = tuple(1 if r.random() < 0.3 else d for d in kept)
    case.is_causal = r.random() < 0.3
    case.scale = r.uniform(0.05, 1.0) if r.random() < 0.3 else None
    case.layouts = [r.choice(["contiguous", "contiguous", "seq_major", "strided", "transposed"])
                    for _ in range(3)]
    return case


CASES = [_draw_case(random.Random(seed)) for seed in range(200)]


def _tensor(shape: Shape, layout: str) -> torch.Tensor:
    """A random float32 tensor of `shape` in one of several memory layouts."""
    if layout == "seq_major" and len(shape) >= 3:  # flash-attn's [.., L, H, E] memory
        return torch.randn(shape[:-3] + (shape[-2], shape[-3], shape[-1])).transpose(-2, -3)
    if layout == "strided":  # every other element of the last axis
        return torch.randn(shape[:-1] + (2 * shape[-1],))[..., ::2]
    if layout == "transposed":  # column-major last two axes
        return torch.randn(shape[:-2] + (shape[-1], shape[-2])).transpose(-1, -2)
    return torch.randn(shape)


def _mask(case: Case) -> Optional[torch.Tensor]:
    if case.mask_kind == "none":
        return None
    shape = case.mask_shape or ()
    if case.mask_kind == "bool":
        return torch.rand(shape) < 0.8
    mask = torch.randn(shape)
    return mask.masked_fill(torch.rand(shape) < 0.1, -math.inf)


def _inputs(case: Case) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    q = _tensor(case.q_shape, case.layouts[0])
    k = _tensor(case.k_shape, case.layouts[1])
    v = _tensor(case.v_shape, case.layouts[2])
    return q, k, v, _mask(case)


def _torch_accepts(kwargs: dict, q: torch.Tensor, k: torch.Tensor) -> dict:
    """torch's math backend rejects attn_mask with is_causal (its flash
    backend applies both, as salience does): for torch, fold the causal
    mask into attn_mask."""
    mask = kwargs["attn_mask"]
    if mask is None or not kwargs["is_causal"]:
        return kwargs
    causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    if mask.dtype == torch.bool:
        mask = mask & causal
    else:
        mask = mask.masked_fill(~causal, -math.inf)
    return dict(kwargs, attn_mask=mask, is_causal=False)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_battery_within_2x_of_torch_error(case: Case) -> None:
    q, k, v, mask = _inputs(case)
    kwargs = dict(attn_mask=mask, is_causal=case.is_causal, scale=case.scale,
                  enable_gqa=case.enable_gqa)
    ours = salience.scaled_dot_product_attention(q, k, v, **kwargs)
    theirs = F.scaled_dot_product_attention(q, k, v, **_torch_accepts(kwargs, q, k))
    exact = sdpa_reference(q, k, v, **kwargs)
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32
    assert ours.shape == theirs.shape == exact.shape
    # The tensor's error (Frobenius) within 2x of torch's; its worst element
    # within 4x, as one element's error varies more between summation orders.
    ours_error, torch_error = norm_error(ours, exact), norm_error(theirs, exact)
    assert ours_error <= max(2 * torch_error, FP32_FLOOR), (ours_error, torch_error)
    ours_worst, torch_worst = relative_error(ours, exact), relative_error(theirs, exact)
    assert ours_worst <= max(4 * torch_worst, 4 * FP32_FLOOR), (ours_worst, torch_worst)


def test_battery_covers_every_form() -> None:
    """The draw above reaches every argument and broadcast form."""
    def has(pred: object) -> bool:
        return any(pred(c) for c in CASES)  # type: ignore[operator]

    assert has(lambda c: c.mask_kind == "bool") and has(lambda c: c.mask_kind == "float")
    assert has(lambda c: c.mask_shape and 1 in c.mask_shape)
    assert has(lambda c: c.mask_shape and len(c.mask_shape) < len(c.q_shape))
    assert has(lambda c: c.enable_gqa and c.q_shape[-3] != c.k_shape[-3])
    assert has(lambda c: len(c.q_shape) == 2) and has(lambda c: len(c.q_shape) == 5)
    assert has(lambda c: c.q_shape[:-2] != c.k_shape[:-2] and not c.enable_gqa)
    assert has(lambda c: c.q_shape[-2] != c.k_shape[-2])
    assert has(lambda c: c.is_causal and c.mask_kind != "none")
    assert has(lambda c: c.scale is not None)
    for layout in ("seq_major", "strided", "transposed"):
        assert has(lambda c: layout in c.layouts)


def test_signature_is_torchs() -> None:
    """Names and defaults of torch's documented signature (its first
    docstring line; torch's function is a builtin without __signature__)."""
    documented = F.scaled_dot_product_attention.__doc__.split("->")[0]
    params = documented[documented.index("(") + 1:documented.rindex(")")]
    theirs = [tuple(p.strip().split("=")) for p in params.split(",")]
    ours = [(p.name,) if p.default is inspect.Parameter.empty else (p.name, repr(p.default))
            for p in inspect.signature(salience.scaled_dot_product_attention).parameters.values()]
    assert ours == theirs


def test_scale_is_keyword_only_as_in_torch() -> None:
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(TypeError):
        salience.scaled_dot_product_attention(q, q, q, None, 0.0, False, 0.5)  # type: ignore[misc]


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_masked_row_gives_zero(kind: str) -> None:
    """salience gives 0 for a row that may attend no key, by design. torch
    2.13 on the CPU gives 0 as well (older torch gave NaN)."""
    q, k, v = torch.randn(2, 3, 6, 16), torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 16)
    if kind == "bool":
        mask = torch.rand(6, 9) < 0.7
        mask[2] = False
    else:
        mask = torch.randn(6, 9)
        mask[2] = -math.inf
    ours = salience.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(ours[:, :, 2], torch.zeros(2, 3, 16))
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(theirs[:, :, 2], torch.zeros(2, 3, 16))
    assert relative_error(ours, theirs) < 1e-5


def test_causal_and_mask_apply_both() -> None:
    q, k, v = torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, 8)
    mask = torch.randn(7, 7)
    ours = salience.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
    both = mask.masked_fill(~torch.ones(7, 7, dtype=torch.bool).tril(), -math.inf)
    assert relative_error(ours, sdpa_reference(q, k, v, attn_mask=both)) < 1e-6
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
    assert relative_error(ours, theirs) < 1e-5  # torch's default CPU backend agrees


def test_causal_is_top_left() -> None:
    q, k, v = torch.randn(1, 1, 3, 8), torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 8)
    ours = salience.scaled_dot_product_attention(q, k, v, is_causal=True)
    # Row 0 sees key 0 only: its output is v's first row.
    assert torch.allclose(ours[0, 0, 0], v[0, 0, 0])


def test_numpy_in_numpy_out() -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 4, 9, 16), dtype=np.float32)
    k = rng.standard_normal((2, 4, 11, 16), dtype=np.float32)
    v = rng.standard_normal((2, 4, 11, 16), dtype=np.float32)
    mask = rng.random((9, 11)) < 0.8
    ours = salience.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
    assert isinstance(ours, np.ndarray) and ours.dtype == np.float32
    exact = sdpa_reference(*(torch.from_numpy(x) for x in (q, k, v)),
                           attn_mask=torch.from_numpy(mask), is_causal=True)
    assert relative_error(torch.from_numpy(ours), exact) < 1e-5


def test_numpy_views_are_not_copied() -> None:
    """Zero-copy: NumPy allocations during the call (traced by tracemalloc)
    are the output alone, though every input is a non-contiguous view."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3, 2, 128, 4, 64), dtype=np.float32)  # [3, B, L, H, E]
    q, k, v = (base[i].swapaxes(1, 2) for i in range(3))  # [B, H, L, E] views
    mask = np.broadcast_to(rng.random((128, 128)) < 0.9, (2, 4, 128, 128))
    tracemalloc.start()
    try:
        out = salience.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < out.nbytes + 64 * 1024, (peak, out.nbytes)


def test_expanded_inputs() -> None:
    """Stride-0 views from expand() are read in place."""
    q = torch.randn(2, 4, 5, 8)
    k = torch.randn(1, 1, 7, 8).expand(2, 4, 7, 8)
    v = torch.randn(1, 4, 7, 8).expand(2, 4, 7, 8)
    ours = salience.scaled_dot_product_attention(q, k, v)
    assert relative_error(ours, F.scaled_dot_product_attention(q, k, v)) < 1e-5


@pytest.mark.parametrize("shapes", [
    ((2, 3, 0, 8), (2, 3, 5, 8)),   # no queries
    ((2, 3, 4, 8), (2, 3, 0, 8)),   # no keys: torch and salience give 0
    ((0, 3, 4, 8), (0, 3, 5, 8)),   # no batch
    ((2, 0, 4, 8), (2, 0, 5, 8)),   # no heads
])
def test_empty_sizes(shapes: Tuple[Shape, Shape]) -> None:
    q, k = torch.randn(shapes[0]), torch.randn(shapes[1])
    ours = salience.scaled_dot_product_attention(q, k, k)
    theirs = F.scaled_dot_product_attention(q, k, k)
    assert ours.shape == theirs.shape
    assert torch.equal(ours, theirs)


def test_inputs_are_not_modified() -> None:
    q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    copies = [x.clone() for x in (q, k, v)]
    salience.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert all(torch.equal(a, b) for a, b in zip((q, k, v), copies))


def test_under_autograd_gradients_flow_and_no_grad_records_nothing() -> None:
    q = torch.randn(1, 2, 5, 8, requires_grad=True)
    k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    out = salience.scaled_dot_product_attention(q, k, v)
    assert out.requires_grad
    assert relative_error(out.detach(), F.scaled_dot_product_attention(q, k, v).detach()) < 1e-5
    out.sum().backward()
    assert q.grad is not None and q.grad.shape == q.shape and k.grad is None
    with torch.no_grad():
        assert not salience.scaled_dot_product_attention(q, k, v).requires_grad
    with torch.inference_mode():
        assert not salience.scaled_dot_product_attention(q, k, v).requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_step_runs_the_decode_kernel(dtype: torch.dtype) -> None:
    # A decode step through the drop-in (one new query per sequence, GQA, a
    # long cache in torch's [B, H, N, D] order) runs the decode kernel: the
    # same bits as flash_attn_with_kvcache on the same cache, within 2x of
    # torch's own error.
    torch.manual_seed(3)
    q = torch.randn(2, 8, 1, 64).to(dtype)
    k = torch.randn(2, 2, 1500, 64).to(dtype)
    v = torch.randn(2, 2, 1500, 64).to(dtype)
    out = salience.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    decode = salience.flash_attn_with_kvcache(q.transpose(1, 2), k.transpose(1, 2),
                                              v.transpose(1, 2)).transpose(1, 2)
    assert out.dtype == dtype
    assert torch.equal(out, decode)
    ref = sdpa_reference(q.double(), k.double(), v.double(), enable_gqa=True)
    theirs = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    floor = FP32_FLOOR if dtype == torch.float32 else 2.0 ** -8
    assert norm_error(out, ref) <= max(2 * norm_error(theirs, ref), floor)
