"""flash-attn's entry points against the fp64 oracle written from
flash-attn's documentation and against salience's C++ reference kernel:
windows, softcap, ALiBi, GQA, bottom-right causal, varlen, packed inputs, the
KV cache, and rows that see no key."""

from __future__ import annotations

import math
import random
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch

import salience
from salience import flash_attn_interface as fa
from oracles import flash_reference, relative_error, varlen_reference

# fp32 against fp64, relative to the largest output: the worst case of the
# battery is near 1e-6 (about 8 ulps).
TOLERANCE = 5e-6


def _draw(seed: int) -> Dict[str, Any]:
    r = random.Random(seed)
    heads = r.choice([1, 2, 4, 6])
    return dict(
        batch=r.choice([1, 2, 3]),
        seq_q=r.choice([1, 4, 17, 64, 77]),
        seq_k=r.choice([1, 5, 17, 64, 100]),
        heads=heads,
        heads_kv=r.choice([d for d in range(1, heads + 1) if heads % d == 0]),
        head_dim=r.choice([8, 32, 64, 96, 128]),
        causal=r.random() < 0.5,
        window=r.choice([(-1, -1), (-1, -1), (3, 0), (2, 5), (0, 0), (-1, 2), (6, -1)]),
        softcap=r.choice([0.0, 0.0, 2.5, 30.0]),
        alibi=r.choice([None, None, "heads", "batch"]),
        scale=r.choice([None, None, 0.2]),
    )


CASES = [_draw(seed) for seed in range(120)]


def _case_id(c: Dict[str, Any]) -> str:
    return (f"b{c['batch']}-q{c['seq_q']}-k{c['seq_k']}-h{c['heads']}/{c['heads_kv']}"
            f"-d{c['head_dim']}{'-causal' if c['causal'] else ''}-w{c['window'][0]},{c['window'][1]}"
            f"-cap{c['softcap']}-alibi{c['alibi']}-scale{c['scale']}")


def _slopes(kind: Any, batch: int, heads: int) -> Any:
    if kind is None:
        return None
    shape = (heads,) if kind == "heads" else (batch, heads)
    return torch.rand(shape) * 0.5


@pytest.mark.parametrize("c", CASES, ids=_case_id)
def test_flash_attn_func_matches_documented_semantics(c: Dict[str, Any]) -> None:
    q = torch.randn(c["batch"], c["seq_q"], c["heads"], c["head_dim"])
    k = torch.randn(c["batch"], c["seq_k"], c["heads_kv"], c["head_dim"])
    v = torch.randn(c["batch"], c["seq_k"], c["heads_kv"], c["head_dim"])
    alibi = _slopes(c["alibi"], c["batch"], c["heads"])
    out, lse, probs = salience.flash_attn_func(
        q, k, v, softmax_scale=c["scale"], causal=c["causal"], window_size=c["window"],
        softcap=c["softcap"], alibi_slopes=alibi, return_attn_probs=True)
    exact_out, exact_lse = flash_reference(
        q, k, v, scale=c["scale"], causal=c["causal"], window=c["window"],
        softcap=c["softcap"], alibi=alibi)
    assert out.shape == q.shape and lse.shape == (c["batch"], c["heads"], c["seq_q"])
    assert probs is None
    assert relative_error(out, exact_out) < TOLERANCE
    # Rows that see no key: out 0 and lse -inf exactly, as flash-attn.
    hidden = torch.isneginf(exact_lse)
    assert torch.equal(torch.isneginf(lse), hidden)
    assert torch.all(out.permute(0, 2, 1, 3)[hidden] == 0)
    assert relative_error(lse[~hidden], exact_lse[~hidden]) < TOLERANCE

    # The C++ reference kernel (fp64 accumulation) through salience.attention.
    ref_out, ref_lse = salience.attention(
        q, k, v, scale=c["scale"], causal="bottom_right" if c["causal"] else "none",
        window_left=c["window"][0], window_right=c["window"][1], softcap=c["softcap"],
        alibi_slopes=alibi, return_lse=True, reference=True)
    assert relative_error(ref_out, exact_out) < 1e-6
    assert relative_error(out, ref_out) < TOLERANCE


def test_bottom_right_causal_leaves_early_rows_empty() -> None:
    """seq_q > seq_k: query i sees keys j <= i + seq_k - seq_q, so the first
    seq_q - seq_k rows see none and give 0 (lse -inf)."""
    q, k, v = torch.randn(1, 7, 2, 16), torch.randn(1, 3, 2, 16), torch.randn(1, 3, 2, 16)
    out, lse, _ = salience.flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    assert torch.all(out[:, :4] == 0) and torch.all(torch.isneginf(lse[:, :, :4]))
    assert torch.all(torch.isfinite(lse[:, :, 4:]))
    # The last row sees every key; the first visible row sees key 0 alone.
    assert torch.allclose(out[0, 4], v[0, 0], atol=1e-6)


def test_window_of_zero_sees_the_diagonal_only() -> None:
    q, k, v = torch.randn(2, 9, 3, 8), torch.randn(2, 9, 3, 8), torch.randn(2, 9, 3, 8)
    out = salience.flash_attn_func(q, k, v, window_size=(0, 0))
    assert torch.allclose(out, v, atol=1e-6)


def _packed(lengths: List[int], heads: int, dim: int, extra_rows: int = 0) -> Tuple[torch.Tensor, np.ndarray]:
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return torch.randn(int(cu[-1]) + extra_rows, heads, dim), cu


@pytest.mark.parametrize("seed", range(12))
def test_varlen_matches_per_sequence_attention(seed: int) -> None:
    r = random.Random(seed)
    num_seqs = r.randint(1, 5)
    lens_q = [r.choice([0, 1, 3, 17, 40]) for _ in range(num_seqs)]
    lens_k = [r.choice([0, 1, 5, 17, 64]) for _ in range(num_seqs)]
    heads, heads_kv, dim = r.choice([(4, 4), (4, 2), (6, 1)]) + (r.choice([16, 64]),)
    q, cu_q = _packed(lens_q, heads, dim, extra_rows=r.choice([0, 3]))
    k, cu_k = _packed(lens_k, heads_kv, dim)
    v = torch.randn_like(k)
    options = dict(causal=r.random() < 0.5, window=r.choice([(-1, -1), (4, 1)]),
                   softcap=r.choice([0.0, 5.0]))
    alibi = r.choice([None, torch.rand(heads), torch.rand(num_seqs, heads)])
    # Offsets as tensors (of the inputs' kind) or as a Python list.
    cu_q_arg = torch.from_numpy(cu_q) if seed % 2 else cu_q.tolist()
    out, lse, _ = salience.flash_attn_varlen_func(
        q, k, v, cu_q_arg, torch.from_numpy(cu_k), max(lens_q), max(lens_k), causal=options["causal"],
        window_size=options["window"], softcap=options["softcap"], alibi_slopes=alibi,
        return_attn_probs=True)
    exact_out, exact_lse = varlen_reference(q, k, v, cu_q, cu_k, alibi=alibi, **options)
    assert out.shape == q.shape and lse.shape == (heads, q.shape[0])
    assert relative_error(out, exact_out) < TOLERANCE
    assert torch.equal(torch.isneginf(lse), torch.isneginf(exact_lse))
    finite = torch.isfinite(exact_lse)
    assert relative_error(lse[finite], exact_lse[finite]) < TOLERANCE
    assert torch.all(out[int(cu_q[-1]):] == 0)  # rows past the last sequence


def test_packed_entry_points_equal_unpacked() -> None:
    qkv = torch.randn(2, 11, 3, 4, 32)
    expected = salience.flash_attn_func(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal=True)
    assert torch.equal(salience.flash_attn_qkvpacked_func(qkv, causal=True), expected)
    kv = qkv[:, :, 1:]
    assert torch.equal(salience.flash_attn_kvpacked_func(qkv[:, :, 0], kv, causal=True), expected)

    packed, cu_array = _packed([5, 0, 9], 4, 32)
    cu = torch.from_numpy(cu_array)
    qkv_packed = torch.stack([packed, torch.randn_like(packed), torch.randn_like(packed)], dim=1)
    expected = salience.flash_attn_varlen_func(
        qkv_packed[:, 0], qkv_packed[:, 1], qkv_packed[:, 2], cu, cu, 9, 9, causal=True)
    assert torch.equal(fa.flash_attn_varlen_qkvpacked_func(qkv_packed, cu, 9, causal=True), expected)
    assert torch.equal(fa.flash_attn_varlen_kvpacked_func(
        qkv_packed[:, 0], qkv_packed[:, 1:], cu, cu, 9, 9, causal=True), expected)


def test_kvcache_appends_then_attends() -> None:
    batch, cache_len, heads, heads_kv, dim = 3, 32, 4, 2, 16
    k_cache = torch.zeros(batch, cache_len, heads_kv, dim)
    v_cache = torch.zeros(batch, cache_len, heads_kv, dim)
    k_cache[:, :20], v_cache[:, :20] = torch.randn(batch, 20, heads_kv, dim), torch.randn(batch, 20, heads_kv, dim)
    k_cache[:, 20:] = float("nan")  # never read: past each entry's length
    seqlens = torch.tensor([4, 11, 20], dtype=torch.int32)
    q = torch.randn(batch, 2, heads, dim)
    k_new, v_new = torch.randn(batch, 2, heads_kv, dim), torch.randn(batch, 2, heads_kv, dim)
    out, lse = salience.flash_attn_with_kvcache(
        q, k_cache, v_cache, k_new, v_new, cache_seqlens=seqlens, causal=True,
        return_softmax_lse=True)
    for b, length in enumerate(seqlens.tolist()):
        assert torch.equal(k_cache[b, length:length + 2], k_new[b])
        assert torch.equal(v_cache[b, length:length + 2], v_new[b])
        exact_out, exact_lse = flash_reference(q[b:b + 1], k_cache[b:b + 1], v_cache[b:b + 1],
                                               causal=True, k_len=length + 2)
        assert relative_error(out[b:b + 1], exact_out) < TOLERANCE
        assert relative_error(lse[b:b + 1], exact_lse) < TOLERANCE


def test_numpy_inputs_give_numpy_outputs() -> None:
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 6, 4, 32), dtype=np.float32)
    k = rng.standard_normal((2, 9, 2, 32), dtype=np.float32)
    out = salience.flash_attn_func(q, k, k, causal=True, window_size=(3, 0))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    exact, _ = flash_reference(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(k),
                               causal=True, window=(3, 0))
    assert relative_error(torch.from_numpy(out), exact) < TOLERANCE


def test_results_are_deterministic_across_threads() -> None:
    q, k = torch.randn(2, 300, 4, 64), torch.randn(2, 333, 4, 64)
    first = salience.flash_attn_func(q, k, k, causal=True, deterministic=True)
    default_threads = salience.get_num_threads()
    try:
        salience.set_num_threads(1)
        single = salience.flash_attn_func(q, k, k, causal=True)
    finally:
        salience.set_num_threads(0)
    assert salience.get_num_threads() == default_threads
    assert torch.equal(first, single)
    assert torch.equal(first, salience.flash_attn_func(q, k, k, causal=True))


def test_module_path_mirrors_flash_attn() -> None:
    for name in fa.__all__:
        assert callable(getattr(fa, name))
    assert salience.flash_attn_func is fa.flash_attn_func
    assert salience.flash_attn_varlen_func is fa.flash_attn_varlen_func
