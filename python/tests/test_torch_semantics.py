"""torch semantics every entry point must keep (issue 23): tensors with the
lazy negative or conjugate bit are read by value; the backward is not
differentiable again, and says so; writes in place (out=, KV-cache appends)
bump torch's version counter and follow torch's rules for tensors that
require grad; inference-only functions raise if differentiated."""

from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np
import pytest
import torch

import salience
from salience import flash_attn_interface as fa


def neg_view(x: torch.Tensor) -> torch.Tensor:
    """x's values as a view with the negative bit set (torch stores -x and
    negates lazily, as x.conj().imag of a complex tensor does)."""
    view = torch._neg_view(-x)
    assert view.is_neg() and torch.equal(view, x)
    return view


def test_the_reported_case() -> None:
    """The issue's example: x.conj().imag of a complex tensor."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 5, 8, dtype=torch.complex64).conj().imag
    k, v = torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 8)
    assert x.is_neg()
    expected = torch.nn.functional.scaled_dot_product_attention(x, k, v)
    assert torch.allclose(salience.scaled_dot_product_attention(x, k, v), expected, atol=1e-5)


def _packed_cache(batch: int = 2) -> Dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return dict(q=torch.randn(batch, 2, 4, 16), k_cache=torch.randn(batch, 12, 2, 16),
                v_cache=torch.randn(batch, 12, 2, 16))


CU = torch.tensor([0, 3, 7], dtype=torch.int32)

# Each case: (entry point, its arguments); every tensor argument in turn
# becomes a negative view of the same values, and the result must be the
# plain call's, bit for bit.
NEG_CASES: Dict[str, Callable[[], Any]] = {
    "sdpa": lambda: (salience.scaled_dot_product_attention,
                     dict(query=torch.randn(2, 3, 5, 8), key=torch.randn(2, 3, 6, 8),
                          value=torch.randn(2, 3, 6, 8), attn_mask=torch.randn(5, 6))),
    "attention": lambda: (salience.attention,
                          dict(q=torch.randn(2, 5, 4, 8), k=torch.randn(2, 6, 2, 8),
                               v=torch.randn(2, 6, 2, 8), mask=torch.randn(5, 6),
                               alibi_slopes=torch.rand(4), seqlens_k=torch.tensor([6, 4]))),
    "attention varlen": lambda: (salience.attention,
                                 dict(q=torch.randn(7, 4, 8), k=torch.randn(7, 2, 8),
                                      v=torch.randn(7, 2, 8), cu_seqlens_q=CU, cu_seqlens_k=CU,
                                      causal=True)),
    "flash_attn_func": lambda: (salience.flash_attn_func,
                                dict(q=torch.randn(2, 5, 4, 8), k=torch.randn(2, 6, 2, 8),
                                     v=torch.randn(2, 6, 2, 8), alibi_slopes=torch.rand(2, 4))),
    "flash_attn_varlen_func": lambda: (
        salience.flash_attn_varlen_func,
        dict(q=torch.randn(7, 4, 8), k=torch.randn(7, 2, 8), v=torch.randn(7, 2, 8),
             cu_seqlens_q=CU, cu_seqlens_k=CU, max_seqlen_q=4, max_seqlen_k=4)),
    "flash_attn_qkvpacked_func": lambda: (fa.flash_attn_qkvpacked_func,
                                          dict(qkv=torch.randn(2, 5, 3, 4, 8))),
    "flash_attn_varlen_kvpacked_func": lambda: (
        fa.flash_attn_varlen_kvpacked_func,
        dict(q=torch.randn(7, 4, 8), kv=torch.randn(7, 2, 2, 8), cu_seqlens_q=CU,
             cu_seqlens_k=CU, max_seqlen_q=4, max_seqlen_k=4)),
    "kvcache": lambda: (salience.flash_attn_with_kvcache,
                        dict(**_packed_cache(), cache_seqlens=torch.tensor([5, 12], dtype=torch.int32),
                             cache_leftpad=torch.tensor([1, 0], dtype=torch.int32),
                             alibi_slopes=torch.rand(4), causal=True)),
    "kvcache paged": lambda: (salience.flash_attn_with_kvcache,
                              dict(q=torch.randn(2, 2, 4, 16), k_cache=torch.randn(6, 4, 2, 16),
                                   v_cache=torch.randn(6, 4, 2, 16),
                                   block_table=torch.tensor([[5, 0, 2], [1, 3, 4]], dtype=torch.int32),
                                   cache_seqlens=torch.tensor([9, 12], dtype=torch.int32))),
    "kvcache batch_idx": lambda: (salience.flash_attn_with_kvcache,
                                  dict(**_packed_cache(), cache_batch_idx=torch.tensor([1, 0], dtype=torch.int32))),
    "kvcache rotary": lambda: (salience.flash_attn_with_kvcache,
                               dict(q=torch.randn(2, 1, 4, 16), k_cache=torch.zeros(2, 12, 2, 16),
                                    v_cache=torch.zeros(2, 12, 2, 16), k=torch.randn(2, 1, 2, 16),
                                    v=torch.randn(2, 1, 2, 16), rotary_cos=torch.rand(12, 4),
                                    rotary_sin=torch.rand(12, 4),
                                    cache_seqlens=torch.tensor([3, 7], dtype=torch.int32))),
    "varlen paged": lambda: (salience.flash_attn_varlen_func,
                             dict(q=torch.randn(7, 4, 16), k=torch.randn(6, 4, 2, 16),
                                  v=torch.randn(6, 4, 2, 16), cu_seqlens_q=CU,
                                  cu_seqlens_k=torch.tensor([0, 9, 21], dtype=torch.int32),
                                  max_seqlen_q=4, max_seqlen_k=12, causal=True,
                                  block_table=torch.tensor([[5, 0, 2], [1, 3, 4]], dtype=torch.int32))),
    "merge": lambda: (salience.merge_attention_states,
                      dict(out_a=torch.randn(2, 3, 4, 8), lse_a=torch.randn(2, 4, 3),
                           out_b=torch.randn(2, 3, 4, 8), lse_b=torch.randn(2, 4, 3))),
}


def _call(function: Callable[..., Any], arguments: Dict[str, Any]) -> Any:
    # Caches that k/v are appended to are cloned per call, so that each
    # call starts from the same cache.
    return function(**{n: a.clone() if n in ("k_cache", "v_cache") else a
                       for n, a in arguments.items()})


@pytest.mark.parametrize("case", sorted(NEG_CASES))
def test_negative_views_are_read_by_value(case: str) -> None:
    torch.manual_seed(2)
    function, arguments = NEG_CASES[case]()
    expected = _call(function, arguments)
    for name, value in arguments.items():
        if not isinstance(value, torch.Tensor):
            continue
        if name in ("k_cache", "v_cache") and "k" in arguments:
            continue  # written in place: refused with the bit (below)
        result = _call(function, {**arguments, name: neg_view(value)})
        for got, want in zip(result if isinstance(result, tuple) else (result,),
                             expected if isinstance(expected, tuple) else (expected,)):
            assert torch.equal(got, want), f"{case}: {name} with the negative bit"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_negative_16bit_views(dtype: torch.dtype) -> None:
    q, k = torch.randn(1, 4, 2, 16).to(dtype), torch.randn(1, 6, 2, 16).to(dtype)
    expected = salience.flash_attn_func(q, k, k)
    assert torch.equal(salience.flash_attn_func(neg_view(q), neg_view(k), k), expected)


def test_negative_views_under_autograd() -> None:
    """Saved inputs and the incoming gradient with the negative bit: the
    gradients are those of the plain tensors."""
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 5, 2, 8, dtype=torch.float64).float() for _ in range(3))
    grad = torch.randn(1, 5, 2, 8)

    def gradients(negate: bool) -> Any:
        leaves = [x.clone().requires_grad_() for x in (q, k, v)]
        inputs = [neg_view(x) if negate else x for x in leaves]
        out = salience.flash_attn_func(*inputs, causal=True)
        out.backward(neg_view(grad) if negate else grad)
        return [x.grad for x in leaves]

    for got, want in zip(gradients(True), gradients(False)):
        assert torch.equal(got, want)


def test_conjugate_bit_is_refused_by_dtype() -> None:
    """Only complex tensors carry the conjugate bit, and complex is not an
    attention dtype."""
    z = torch.randn(1, 4, 2, 8, dtype=torch.complex64).conj()
    with pytest.raises(TypeError, match="q.dtype"):
        salience.flash_attn_func(z, z, z)


def test_written_arrays_refuse_the_negative_bit() -> None:
    q = torch.randn(1, 4, 2, 8)
    with pytest.raises(ValueError, match="out: .*negative bit"):
        salience.attention(q, q, q, out=neg_view(torch.zeros(1, 4, 2, 8)))
    cache = neg_view(torch.randn(1, 6, 2, 8))
    with pytest.raises(ValueError, match="k_cache: .*negative bit"):
        salience.flash_attn_with_kvcache(q[:, :1], cache, torch.zeros(1, 6, 2, 8),
                                         k=q[:, :1], v=q[:, :1], cache_seqlens=2)


# --- double backward ------------------------------------------------------

DOUBLE_BACKWARD = {
    "sdpa": lambda q, k, v: salience.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True),
    "attention": lambda q, k, v: salience.attention(q, k, v, causal=True),
    "flash_attn_func": lambda q, k, v: salience.flash_attn_func(q, k, v, causal=True),
    "flash_attn_varlen_func": lambda q, k, v: salience.flash_attn_varlen_func(
        q[0], k[0], v[0], CU[:2], CU[:2], 3, 3),
}


@pytest.mark.parametrize("entry", sorted(DOUBLE_BACKWARD))
def test_double_backward_raises(entry: str) -> None:
    """The issue's case: a gradient taken with create_graph=True has a
    graph, and differentiating it again raises (once_differentiable)
    instead of returning torch's answer less the second-order terms."""
    q, k, v = (torch.randn(1, 3, 2, 8, requires_grad=True) for _ in range(3))
    out = DOUBLE_BACKWARD[entry](q, k, v)
    g, = torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)
    assert g.grad_fn is not None
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.pow(2).sum().backward()


def test_first_order_gradients_unchanged_by_create_graph() -> None:
    q, k, v = (torch.randn(1, 3, 2, 8, requires_grad=True) for _ in range(3))
    out = salience.flash_attn_func(q, k, v)
    g1, = torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)
    out = salience.flash_attn_func(q, k, v)
    g2, = torch.autograd.grad(out.pow(2).sum(), q)
    assert torch.equal(g1.detach(), g2)


# --- in-place writes --------------------------------------------------------

def test_out_bumps_the_version_counter() -> None:
    """The issue's case: x.exp() saves its result for the backward; writing
    attention into it must make that backward fail, as torch does."""
    x = torch.randn(1, 4, 2, 8, requires_grad=True)
    q = torch.randn(1, 4, 2, 8)
    y = x.exp()
    with pytest.raises(RuntimeError, match="out: a tensor that requires grad"):
        salience.attention(q, q, q, out=y)
    with torch.no_grad():
        version = y._version
        salience.attention(q, q, q, out=y)
        assert y._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_out_follows_torch_rules_for_grad() -> None:
    q = torch.randn(1, 4, 2, 8)
    leaf = torch.zeros(1, 4, 2, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="out: a leaf tensor that requires grad"):
        salience.attention(q, q, q, out=leaf)
    with torch.no_grad():  # allowed, as torch.add(..., out=leaf) is
        salience.attention(q, q, q, out=leaf)
    assert torch.equal(leaf.detach(), salience.attention(q, q, q))
    q_grad = q.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        salience.attention(q_grad, q, q, out=torch.empty(1, 4, 2, 8))
    with torch.no_grad():
        out = torch.empty(1, 4, 2, 8)
        assert salience.attention(q_grad, q, q, out=out) is out


def test_kvcache_append_bumps_versions_and_refuses_grad() -> None:
    q, new = torch.randn(1, 1, 2, 8), torch.randn(1, 1, 2, 8)
    x = torch.randn(1, 6, 2, 8, requires_grad=True)
    k_cache, v_cache = x * 1, torch.zeros(1, 6, 2, 8)  # k_cache is in x's graph
    saved = (k_cache * x).sum()  # saves k_cache for x's gradient
    with pytest.raises(RuntimeError, match="k_cache: a tensor that requires grad"):
        salience.flash_attn_with_kvcache(q, k_cache, v_cache, new, new, cache_seqlens=2)
    with torch.no_grad():
        versions = k_cache._version, v_cache._version
        salience.flash_attn_with_kvcache(q, k_cache, v_cache, new, new, cache_seqlens=2)
        assert k_cache._version > versions[0] and v_cache._version > versions[1]
        assert torch.equal(k_cache[0, 2], new[0, 0])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        saved.backward()
    leaf = torch.zeros(1, 6, 2, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="v_cache: a leaf tensor that requires grad"):
        salience.flash_attn_with_kvcache(q, torch.zeros(1, 6, 2, 8), leaf, new, new,
                                         cache_seqlens=2)
    # Read only (no k/v): a cache that requires grad is just read.
    salience.flash_attn_with_kvcache(q, leaf, leaf, cache_seqlens=3)


def test_numpy_out_and_cache_must_be_writable() -> None:
    q = np.zeros((1, 4, 2, 8), np.float32)
    read_only = np.broadcast_to(np.zeros((1, 1, 2, 8), np.float32), (1, 4, 2, 8))
    with pytest.raises(ValueError, match="out: expected a writable array"):
        salience.attention(q, q, q, out=read_only)
    cache = np.zeros((1, 6, 2, 8), np.float32)
    cache.flags.writeable = False
    with pytest.raises(ValueError, match="k_cache: expected a writable array"):
        salience.flash_attn_with_kvcache(q[:, :1], cache, np.zeros_like(cache),
                                         k=q[:, :1], v=q[:, :1], cache_seqlens=2)
    # A read-only cache that is only read works.
    out = salience.flash_attn_with_kvcache(q[:, :1], cache, cache, cache_seqlens=3)
    assert isinstance(out, np.ndarray) and out.shape == (1, 1, 2, 8)
    with pytest.raises(ValueError, match="out: expected strides"):
        salience.attention(q, q, q, out=np.zeros((1, 4, 2, 8), np.float32)[:, ::-1])


INFERENCE_ONLY = {
    "flash_attn_with_kvcache": lambda q: salience.flash_attn_with_kvcache(
        q, torch.randn(2, 8, 2, 8), torch.randn(2, 8, 2, 8), cache_seqlens=5),
    "flash_attn_varlen_func with block_table": lambda q: salience.flash_attn_varlen_func(
        q[0], torch.randn(3, 4, 2, 8), torch.randn(3, 4, 2, 8), torch.tensor([0, 3]),
        torch.tensor([0, 7]), 3, 7, block_table=torch.tensor([[2, 0]])),
    "merge_attention_states": lambda q: salience.merge_attention_states(
        q, torch.randn(2, 4, 3), q * 2, torch.randn(2, 4, 3))[0],
}


@pytest.mark.parametrize("entry", sorted(INFERENCE_ONLY))
def test_inference_only_functions_raise_when_differentiated(entry: str) -> None:
    q = torch.randn(2, 3, 4, 8, requires_grad=True)
    out = INFERENCE_ONLY[entry](q)
    assert out.requires_grad
    with pytest.raises(NotImplementedError, match=f"{entry} has no backward"):
        out.sum().backward()
    with torch.no_grad():
        assert not INFERENCE_ONLY[entry](q).requires_grad
