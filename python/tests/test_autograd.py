"""Gradients through salience's entry points (torch.autograd).

The kernels compute in float32, so torch.autograd.gradcheck's default fp64
tolerances cannot hold for them. Two checks make up for it:

- gradcheck of the fp64 reference path (reference=True): the reference
  forward and backward accumulate in fp64 and round once to fp32, so with a
  step of 1e-3 the numerical Jacobian is good to ~1e-4 and gradcheck at
  atol = rtol = 2e-3 still fails any wrong term (those are O(1));
- the fused kernel's gradients against torch's own fp64 gradients of the
  documented semantics (torch SDPA's math backend, or the oracles of
  oracles.py run under autograd), relative to the gradient's magnitude.

Dropout: the mask is recovered from the forward itself (with v = I the
output is the dropped weight matrix), then an fp64 oracle with that mask
gives the gradients the backward must match.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import salience
from oracles import flash_reference, relative_error, varlen_reference

# fp32 gradients against fp64 ones, max error relative to the largest
# gradient of the tensor: the battery's worst is under 1e-6.
TOLERANCE = 1e-5


def _grads(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    return list(torch.autograd.grad(loss, inputs))


def _leaf(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return x.detach().to(dtype).requires_grad_()


def _expect_close(ours: Sequence[torch.Tensor], theirs: Sequence[torch.Tensor],
                  what: str, tolerance: float = TOLERANCE) -> None:
    """max |ours - theirs| relative to the largest gradient of the tensor, but
    at least 10% of the largest of all three: a gradient that is exactly 0 in
    fp64 (dq and dk when every row sees one key: the weight is 1 whatever
    the score) comes out of fp32 as rounding noise the size of the others'
    errors, which is no relative error of 100%."""
    overall = max(b.abs().max().item() for b in theirs if b.numel())
    for name, a, b in zip("qkv", ours, theirs):
        assert a.dtype == torch.float32 and a.shape == b.shape
        if not b.numel():
            continue
        scale = max(b.abs().max().item(), 0.1 * overall, 1e-30)
        error = (a.double() - b).abs().max().item() / scale
        assert error < tolerance, f"d{name}: {error:.3g} ({what})"


# ---------------------------------------------------------------------------
# gradcheck of the reference path.

def _gradcheck(f: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> None:
    """gradcheck in fp64 of f applied to fp32 copies of the inputs."""
    inputs64 = [x.double().requires_grad_() for x in inputs]

    def f64(*xs: torch.Tensor) -> torch.Tensor:
        return f(*(x.float() for x in xs)).double()

    assert torch.autograd.gradcheck(f64, inputs64, eps=1e-3, atol=2e-3, rtol=2e-3)


GRADCHECK_CASES: List[Tuple[str, Dict[str, Any]]] = [
    ("plain", {}),
    ("causal top-left", {"causal": "top_left"}),
    ("causal bottom-right", {"causal": "bottom_right"}),
    ("window", {"window_left": 2, "window_right": 1}),
    ("softcap", {"softcap": 1.5}),
    ("alibi", {"alibi_slopes": torch.tensor([0.5, 0.25, 0.125, 0.0625])}),
    ("padding", {"seqlens_q": [5, 3], "seqlens_k": [4, 7]}),
    ("dropout", {"dropout_p": 0.3, "dropout_seed": 11, "dropout_offset": 4}),
]


@pytest.mark.parametrize("options", [c[1] for c in GRADCHECK_CASES],
                         ids=[c[0] for c in GRADCHECK_CASES])
def test_gradcheck_reference_path(options: Dict[str, Any]) -> None:
    q = torch.randn(2, 5, 4, 6)   # [batch, seq, heads, dim], GQA 4 / 2, Dv 5
    k = torch.randn(2, 7, 2, 6)
    v = torch.randn(2, 7, 2, 5)
    _gradcheck(lambda q, k, v: salience.attention(q, k, v, reference=True, **options), q, k, v)


def test_gradcheck_reference_path_varlen_and_masks() -> None:
    q, k, v = torch.randn(9, 2, 4), torch.randn(11, 2, 4), torch.randn(11, 2, 4)
    cu_q, cu_k = [0, 4, 9], [0, 5, 11]
    _gradcheck(lambda q, k, v: salience.attention(
        q, k, v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, causal=True, reference=True), q, k, v)
    additive = torch.randn(2, 1, 9, 11)
    boolean = torch.rand(9, 11) > 0.3
    boolean[:, 0] = True
    q, k, v = torch.randn(2, 9, 2, 4), torch.randn(2, 11, 2, 4), torch.randn(2, 11, 2, 4)
    for mask in (additive, boolean):
        _gradcheck(lambda q, k, v: salience.attention(q, k, v, mask=mask, reference=True), q, k, v)


def test_gradcheck_fused_kernel_at_fp32_tolerance() -> None:
    q, k, v = torch.randn(1, 6, 2, 8), torch.randn(1, 9, 1, 8), torch.randn(1, 9, 1, 8)
    _gradcheck(lambda q, k, v: salience.attention(q, k, v, causal=True, softcap=2.0), q, k, v)


# ---------------------------------------------------------------------------
# scaled_dot_product_attention against torch's math backend in fp64.

def _draw_sdpa(seed: int) -> Dict[str, Any]:
    r = random.Random(seed)
    heads = r.choice([1, 2, 4])
    seq_q = r.choice([1, 5, 16, 33])
    return dict(
        batch=r.choice([1, 2]),
        heads=heads,
        heads_kv=r.choice([d for d in range(1, heads + 1) if heads % d == 0]),
        seq_q=seq_q,
        seq_k=r.choice([s for s in (5, 16, 40) if s >= seq_q] or [seq_q]),
        head_dim=r.choice([8, 32, 64]),
        head_dim_v=r.choice([8, 24, 64]),
        mask=r.choice([None, None, "bool", "float", "bool-broadcast"]),
        causal=r.random() < 0.4,
        scale=r.choice([None, None, 0.3]),
        layout=r.choice(["contiguous", "transposed"]),
    )


SDPA_CASES = [_draw_sdpa(seed) for seed in range(40)]


@pytest.mark.parametrize("c", SDPA_CASES, ids=[str(i) for i in range(len(SDPA_CASES))])
def test_sdpa_gradients_match_torch_math_backend(c: Dict[str, Any]) -> None:
    b, h, hk = c["batch"], c["heads"], c["heads_kv"]
    lq, lk, d, dv = c["seq_q"], c["seq_k"], c["head_dim"], c["head_dim_v"]
    q = torch.randn(b, h, lq, d)
    k = torch.randn(b, hk, lk, d)
    v = torch.randn(b, hk, lk, dv)
    if c["layout"] == "transposed":  # [B, L, H, D] memory viewed as [B, H, L, D]
        q, k, v = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v))
    mask: Optional[torch.Tensor] = None
    causal = c["causal"] and c["mask"] is None  # torch's math backend takes one
    if c["mask"] is not None:
        shape = (lq, lk) if c["mask"] == "bool-broadcast" else (b, h, lq, lk)
        if c["mask"] == "float":
            mask = torch.randn(shape)
        else:
            mask = torch.rand(shape) > 0.3
            mask[..., 0] = True  # no row without a key: torch's math gives NaN there
    grad_out = torch.randn(b, h, lq, dv)
    gqa = h != hk

    inputs = [_leaf(x) for x in (q, k, v)]
    out = salience.scaled_dot_product_attention(*inputs, attn_mask=mask, is_causal=causal,
                                                scale=c["scale"], enable_gqa=gqa)
    ours = _grads((out * grad_out).sum(), inputs)

    inputs64 = [_leaf(x, torch.float64) for x in (q, k, v)]
    with sdpa_kernel(SDPBackend.MATH):
        expected = F.scaled_dot_product_attention(
            *inputs64, attn_mask=None if mask is None else mask if mask.dtype == torch.bool else mask.double(),
            is_causal=causal, scale=c["scale"], enable_gqa=gqa)
    theirs = _grads((expected * grad_out.double()).sum(), inputs64)
    _expect_close(ours, theirs, str(c))


def test_sdpa_broadcast_key_gets_summed_gradient() -> None:
    """A key shared by the batch (expand, stride 0) gets the sum over it."""
    q = _leaf(torch.randn(3, 2, 6, 8))
    k = _leaf(torch.randn(1, 2, 7, 8))
    v = _leaf(torch.randn(2, 7, 8))
    out = salience.scaled_dot_product_attention(q, k, v, is_causal=True)
    ours = _grads(out.square().sum(), [q, k, v])
    inputs64 = [_leaf(x, torch.float64) for x in (q, k, v)]
    theirs = _grads(F.scaled_dot_product_attention(*inputs64, is_causal=True).square().sum(),
                    inputs64)
    _expect_close(ours, theirs, "broadcast")


# ---------------------------------------------------------------------------
# flash-attn's entry points against the fp64 oracles under autograd.

def _draw_flash(seed: int) -> Dict[str, Any]:
    r = random.Random(seed)
    heads = r.choice([2, 4])
    seq_q = r.choice([1, 6, 17])
    return dict(
        batch=r.choice([1, 2]), heads=heads, heads_kv=r.choice([1, heads]),
        seq_q=seq_q, seq_k=r.choice([k for k in (6, 17, 30) if k >= seq_q]),
        head_dim=r.choice([16, 64]), causal=r.random() < 0.5,
        window=r.choice([(-1, -1), (3, 0), (2, 5), (0, 0), (6, -1)]),
        softcap=r.choice([0.0, 0.0, 2.5]), alibi=r.choice([None, "heads", "batch"]),
    )


FLASH_CASES = [_draw_flash(seed) for seed in range(24)]


def _slopes(kind: Optional[str], batch: int, heads: int) -> Optional[torch.Tensor]:
    if kind is None:
        return None
    return torch.rand((heads,) if kind == "heads" else (batch, heads)) * 0.5


@pytest.mark.parametrize("c", FLASH_CASES, ids=[str(i) for i in range(len(FLASH_CASES))])
def test_flash_attn_func_gradients(c: Dict[str, Any]) -> None:
    b, h, hk, lq, lk, d = (c[n] for n in ("batch", "heads", "heads_kv", "seq_q", "seq_k", "head_dim"))
    q, k, v = torch.randn(b, lq, h, d), torch.randn(b, lk, hk, d), torch.randn(b, lk, hk, d)
    alibi = _slopes(c["alibi"], b, h)
    grad_out = torch.randn(b, lq, h, d)
    options = dict(causal=c["causal"], window_size=c["window"], softcap=c["softcap"])
    inputs = [_leaf(x) for x in (q, k, v)]
    out = salience.flash_attn_func(*inputs, alibi_slopes=alibi, **options)
    ours = _grads((out * grad_out).sum(), inputs)
    inputs64 = [_leaf(x, torch.float64) for x in (q, k, v)]
    expected, _ = flash_reference(*inputs64, causal=c["causal"], window=c["window"],
                                  softcap=c["softcap"], alibi=alibi)
    theirs = _grads((expected * grad_out.double()).sum(), inputs64)
    _expect_close(ours, theirs, str(c))


def test_flash_attn_varlen_and_packed_gradients() -> None:
    cu_q, cu_k = [0, 3, 10, 16], [0, 5, 12, 22]
    q, k, v = torch.randn(16, 4, 32), torch.randn(22, 2, 32), torch.randn(22, 2, 32)
    alibi = torch.rand(3, 4) * 0.3
    grad_out = torch.randn(16, 4, 32)
    cu_q_t, cu_k_t = torch.tensor(cu_q, dtype=torch.int32), torch.tensor(cu_k, dtype=torch.int32)
    inputs = [_leaf(x) for x in (q, k, v)]
    out = salience.flash_attn_varlen_func(*inputs, cu_q_t, cu_k_t, 7, 10, causal=True,
                                          window_size=(4, 1), softcap=3.0, alibi_slopes=alibi)
    ours = _grads((out * grad_out).sum(), inputs)
    inputs64 = [_leaf(x, torch.float64) for x in (q, k, v)]
    expected, _ = varlen_reference(*inputs64, cu_q, cu_k, alibi=alibi, causal=True,
                                   window=(4, 1), softcap=3.0)
    theirs = _grads((expected * grad_out.double()).sum(), inputs64)
    _expect_close(ours, theirs, "varlen")

    # Packed: the gradient lands in the one qkv (kv) tensor.
    qkv = _leaf(torch.randn(2, 9, 3, 2, 16))
    out = salience.flash_attn_qkvpacked_func(qkv, causal=True)
    (grad_qkv,) = _grads(out.square().sum(), [qkv])
    qkv64 = _leaf(qkv, torch.float64)
    expected, _ = flash_reference(qkv64[:, :, 0], qkv64[:, :, 1], qkv64[:, :, 2], causal=True)
    (theirs_qkv,) = _grads(expected.square().sum(), [qkv64])
    assert relative_error(grad_qkv, theirs_qkv) < TOLERANCE
    packed = _leaf(torch.randn(22, 3, 2, 32))
    out = salience.flash_attn_varlen_qkvpacked_func(packed, cu_k_t, 10)
    (grad_packed,) = _grads(out.sum(), [packed])
    assert grad_packed.shape == packed.shape and torch.isfinite(grad_packed).all()
    kv = _leaf(torch.randn(2, 11, 2, 2, 16))
    out = salience.flash_attn_kvpacked_func(_leaf(torch.randn(2, 9, 4, 16)), kv)
    (grad_kv,) = _grads(out.sum(), [kv])
    assert grad_kv.abs().sum() > 0


def test_attention_layouts_and_lse_under_autograd() -> None:
    q, k, v = torch.randn(2, 3, 7, 16), torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 8)
    grad_out = torch.randn(2, 3, 7, 8)
    inputs = [_leaf(x) for x in (q, k, v)]
    out, lse = salience.attention(*inputs, layout="bhnd", causal="top_left", return_lse=True)
    assert out.requires_grad and not lse.requires_grad
    ours = _grads((out * grad_out).sum(), inputs)
    inputs64 = [_leaf(x, torch.float64) for x in (q, k, v)]
    expected = F.scaled_dot_product_attention(*inputs64, is_causal=True)
    theirs = _grads((expected * grad_out.double()).sum(), inputs64)
    _expect_close(ours, theirs, "bhnd")


def test_saves_q_k_v_out_lse_not_weights() -> None:
    q = _leaf(torch.randn(1, 64, 2, 8))
    out = salience.flash_attn_func(q, q, q)
    saved = out.grad_fn.saved_tensors
    assert [tuple(t.shape) for t in saved] == [(1, 64, 2, 8)] * 4 + [(1, 2, 64)]


def test_mask_gradient_raises_and_bool_mask_is_fine() -> None:
    q = _leaf(torch.randn(1, 2, 4, 8))
    mask = torch.randn(4, 4, requires_grad=True)
    out = salience.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    with pytest.raises(NotImplementedError, match="not of the mask"):
        out.sum().backward()
    out = salience.scaled_dot_product_attention(q, q, q, attn_mask=mask.detach() > 0)
    out.sum().backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()


def test_fully_masked_rows_get_zero_gradient() -> None:
    q, k, v = (_leaf(torch.randn(1, 8, 2, 16)) for _ in range(3))
    k5 = _leaf(torch.randn(1, 5, 2, 16))
    v5 = _leaf(torch.randn(1, 5, 2, 16))
    out = salience.flash_attn_func(q, k5, v5, causal=True)  # rows 0..2 see no key
    out.square().sum().backward()
    assert q.grad is not None
    assert torch.equal(q.grad[:, :3], torch.zeros_like(q.grad[:, :3]))
    assert q.grad[:, 3:].abs().sum() > 0


def test_gradients_bitwise_identical_across_thread_counts() -> None:
    q, k, v = torch.randn(2, 150, 4, 32), torch.randn(2, 170, 2, 32), torch.randn(2, 170, 2, 32)
    grad_out = torch.randn(2, 150, 4, 32)
    results = []
    for threads in (1, 2, 3, 4, 1):
        inputs = [_leaf(x) for x in (q, k, v)]
        out = salience.attention(*inputs, causal=True, window_left=40, num_threads=threads,
                                 dropout_p=0.1, dropout_seed=3, dropout_offset=9)
        results.append(_grads((out * grad_out).sum(), inputs))
    for grads in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads, results[0]))


# ---------------------------------------------------------------------------
# Dropout.

# A dropout call in torch's [B, H, L, D] layout: the fused kernels through
# scaled_dot_product_attention (seed drawn from torch's generator after
# torch.manual_seed), or the fp64 reference through salience.attention with
# an explicit seed and offset.
DropoutCall = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _dropout_call(path: str, p: float, seed: int, causal: bool = False) -> DropoutCall:
    def fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(seed)
        return salience.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=causal)

    def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return salience.attention(q, k, v, layout="bhnd", dropout_p=p, dropout_seed=seed,
                                  dropout_offset=seed + 1, reference=True,
                                  causal="top_left" if causal else "none")

    return fused if path == "fused" else reference


PATHS = ["fused", "reference"]


def _dropped_weights(q: torch.Tensor, k: torch.Tensor, call: DropoutCall) -> torch.Tensor:
    """The dropped weight matrix [B, H, L, S] of a dropout call: its output
    with v = I."""
    b, h, s = k.shape[0], k.shape[1], k.shape[2]
    eye = torch.eye(s).expand(b, h, s, s)
    with torch.no_grad():
        return call(q, k, eye)


def test_dropout_same_seed_same_result() -> None:
    q, k, v = torch.randn(1, 4, 64, 16), torch.randn(1, 4, 64, 16), torch.randn(1, 4, 64, 16)
    torch.manual_seed(5)
    first = salience.scaled_dot_product_attention(q, k, v, dropout_p=0.3)
    torch.manual_seed(5)
    again = salience.scaled_dot_product_attention(q, k, v, dropout_p=0.3)
    later = salience.scaled_dot_product_attention(q, k, v, dropout_p=0.3)
    assert torch.equal(first, again)
    assert not torch.equal(first, later)  # the generator advanced
    assert not torch.equal(first, salience.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("path", PATHS)
def test_dropout_fraction_and_scale(path: str) -> None:
    k = torch.randn(1, 4, 256, 16)
    for p in (0.1, 0.5):
        # q = 0: every weight is 1/256 before dropout.
        weights = _dropped_weights(torch.zeros(1, 4, 256, 16), k, _dropout_call(path, p, 21))
        dropped = (weights == 0).double().mean().item()
        assert abs(dropped - p) < 0.01, (p, dropped)  # 262144 weights
        kept = weights[weights != 0]
        assert torch.allclose(kept, torch.full_like(kept, 1 / 256 / (1 - p)), rtol=1e-6)


def _dropout_oracle(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kept: torch.Tensor,
                    causal: bool) -> torch.Tensor:
    """fp64 attention ([B, H, L, D]) whose weights are multiplied by `kept`
    (0 or 1 / (1 - p)), as salience's dropout defines it."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        visible = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
        scores = scores.masked_fill(~visible, -math.inf)
    return (torch.softmax(scores, dim=-1) * kept) @ v


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("p", [0.2, 0.6])
def test_dropout_gradient_matches_the_forward_mask(path: str, p: float) -> None:
    q, k, v = torch.randn(2, 3, 20, 16), torch.randn(2, 3, 24, 16), torch.randn(2, 3, 24, 12)
    grad_out = torch.randn(2, 3, 20, 12)
    call = _dropout_call(path, p, 77, causal=True)
    kept = (_dropped_weights(q, k, call) != 0).double() / (1 - p)
    inputs = [_leaf(x) for x in (q, k, v)]
    out = call(*inputs)
    ours = _grads((out * grad_out).sum(), inputs)
    inputs64 = [_leaf(x, torch.float64) for x in (q, k, v)]
    expected = _dropout_oracle(*inputs64, kept, causal=True)
    assert relative_error(out.detach(), expected.detach()) < TOLERANCE
    theirs = _grads((expected * grad_out.double()).sum(), inputs64)
    _expect_close(ours, theirs, f"dropout {p}")


def test_dropout_numpy_inputs_reproducible() -> None:
    x = np.random.default_rng(0).standard_normal((1, 32, 2, 8), dtype=np.float32)
    np.random.seed(3)
    first = salience.flash_attn_func(x, x, x, dropout_p=0.4)
    np.random.seed(3)
    assert np.array_equal(first, salience.flash_attn_func(x, x, x, dropout_p=0.4))
    assert not np.array_equal(first, salience.flash_attn_func(x, x, x))


def test_flash_dropout_backward_uses_the_forward_seed() -> None:
    """The backward reuses the forward's seed and offset: a second forward in
    between (which advances the generator) changes nothing."""
    q, k, v = (torch.randn(1, 12, 2, 8) for _ in range(3))
    grads = []
    for interleave in (False, True):
        torch.manual_seed(9)
        inputs = [_leaf(x) for x in (q, k, v)]
        out = salience.flash_attn_func(*inputs, dropout_p=0.5)
        if interleave:
            salience.flash_attn_func(q, k, v, dropout_p=0.5)
        grads.append(_grads(out.sum(), inputs))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_gradients(dtype: torch.dtype) -> None:
    """bf16/fp16 inputs get gradients of their own dtype, equal to the fp32
    kernel's on the same (rounded) values up to one rounding of the result."""
    torch.manual_seed(11)
    q, k, v = (torch.randn(2, 4, 37, 32).to(dtype) for _ in range(3))
    grad = torch.randn(2, 4, 37, 32).to(dtype)
    low = [_leaf(x, dtype) for x in (q, k, v)]
    out = salience.scaled_dot_product_attention(*low, is_causal=True)
    assert out.dtype == dtype
    got = _grads((out.float() * grad.float()).sum(), low)
    wide = [_leaf(x.float()) for x in (q, k, v)]
    out32 = salience.scaled_dot_product_attention(*wide, is_causal=True)
    want = _grads((out32 * grad.float()).sum(), wide)
    unit = 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -11
    for g, w in zip(got, want):
        assert g.dtype == dtype
        # The forward's out is rounded to the dtype too, so D = rowsum(dO o O)
        # differs by an output rounding: a few units relative to magnitude.
        assert float((g.float() - w).abs().max()) <= 4 * unit * float(w.abs().max())
