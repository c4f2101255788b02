"""flash_attn_with_kvcache (contiguous and paged caches, float32 / bfloat16 /
float16, in-place appends) and merge_attention_states against the fp64
oracle of oracles.py, one sequence at a time over the keys it holds."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
import pytest
import torch

import salience
from oracles import flash_reference, relative_error

TOLERANCE = 2e-5


def _sequence_keys(cache: torch.Tensor, b: int, length: int,
                   block_table: Optional[torch.Tensor]) -> torch.Tensor:
    """Keys 0..length-1 of sequence b, [1, length, heads_k, dim], widened."""
    if block_table is None:
        return cache[b:b + 1, :length].double()
    page = cache.shape[1]
    pages = block_table[b, :(length + page - 1) // page].long()
    return cache[pages].reshape(-1, *cache.shape[2:])[:length][None].double()


def _oracle(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
            lengths: List[int], block_table: Optional[torch.Tensor],
            **options: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    outs, lses = [], []
    for b, length in enumerate(lengths):
        k = _sequence_keys(k_cache, b, length, block_table)
        v = _sequence_keys(v_cache, b, length, block_table)
        out, lse = flash_reference(q[b:b + 1].double(), k, v, **options)
        outs.append(out)
        lses.append(lse)
    return torch.cat(outs), torch.cat(lses)


def _paged(cache: torch.Tensor, lengths: List[int], page: int,
           seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The contiguous cache [B, N, H, D] as shuffled pages and a block table
    (entries past a sequence's last page are -1: never read)."""
    batch, capacity = cache.shape[:2]
    max_pages = (capacity + page - 1) // page
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(batch * max_pages, generator=generator)
    pages = torch.full((batch * max_pages, page, *cache.shape[2:]), float("nan"),
                       dtype=cache.dtype)
    table = torch.full((batch, max_pages), -1, dtype=torch.int32)
    for b in range(batch):
        for p in range(max_pages):
            rows = cache[b, p * page:(p + 1) * page]
            pages[order[b * max_pages + p], :rows.shape[0]] = rows
            if p * page < lengths[b]:
                table[b, p] = order[b * max_pages + p]
    return pages, table


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("page", [None, 16, 5])
def test_append_then_attend_matches_the_oracle(dtype: torch.dtype, page: Optional[int]) -> None:
    torch.manual_seed(0)
    batch, seq_q, heads, heads_k, dim, capacity = 3, 2, 4, 2, 32, 48
    cached = [0, 16, 37]
    q = torch.randn(batch, seq_q, heads, dim)
    k_cache = torch.randn(batch, capacity, heads_k, dim).to(dtype)
    v_cache = torch.randn(batch, capacity, heads_k, dim).to(dtype)
    k_new = torch.randn(batch, seq_q, heads_k, dim).to(dtype)
    v_new = torch.randn(batch, seq_q, heads_k, dim).to(dtype)
    lengths = [c + seq_q for c in cached]
    table = None
    if page is not None:
        k_cache, table = _paged(k_cache, lengths, page, seed=1)
        v_cache, _ = _paged(v_cache, lengths, page, seed=1)
    seqlens = torch.tensor(cached, dtype=torch.int32)
    out, lse = salience.flash_attn_with_kvcache(
        q, k_cache, v_cache, k=k_new, v=v_new, cache_seqlens=seqlens, block_table=table,
        causal=True, return_softmax_lse=True)
    # The new rows are in the cache, at cache_seqlens.
    for b in range(batch):
        rows = _sequence_keys(k_cache, b, lengths[b], table)[0, cached[b]:]
        assert torch.equal(rows, k_new[b].double())
    ref_out, ref_lse = _oracle(q, k_cache, v_cache, lengths, table, causal=True)
    assert relative_error(out, ref_out) < TOLERANCE
    assert relative_error(lse, ref_lse) < TOLERANCE


@pytest.mark.parametrize("options", [
    dict(window_size=(5, 0)),
    dict(softcap=3.0, softmax_scale=0.5),
    dict(alibi_slopes=torch.tensor([0.5, 0.25, 0.125, 0.0625])),
])
def test_options_match_the_oracle(options: Any) -> None:
    torch.manual_seed(1)
    q = torch.randn(2, 3, 4, 16)
    k_cache = torch.randn(2, 40, 1, 16)
    v_cache = torch.randn(2, 40, 1, 16)
    lengths = [40, 9]
    out = salience.flash_attn_with_kvcache(
        q, k_cache, v_cache, cache_seqlens=torch.tensor(lengths, dtype=torch.int32),
        causal=True, **options)
    assert isinstance(out, torch.Tensor)
    oracle_options = dict(causal=True, window=options.get("window_size", (-1, -1)),
                          softcap=options.get("softcap", 0.0),
                          scale=options.get("softmax_scale"), alibi=options.get("alibi_slopes"))
    ref_out, _ = _oracle(q, k_cache, v_cache, lengths, None, **oracle_options)
    assert relative_error(out, ref_out) < TOLERANCE


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_head_major_cache_views(dtype: torch.dtype) -> None:
    """A cache held as [B, H, N, D] (Hugging Face's) passed as its transposed
    view: read in place, matching the oracle, and bitwise equal to the same
    cache in flash-attn's order (a row's arithmetic does not depend on the
    layout, only the kernel's order of reading does)."""
    torch.manual_seed(3)
    lengths = [70, 0, 33]
    q = torch.randn(3, 2, 12, 24)
    k_heads = torch.randn(3, 3, 70, 24).to(dtype)  # 3 kv heads: items of 2 and 1
    v_heads = torch.randn(3, 3, 70, 24).to(dtype)
    seqlens = torch.tensor(lengths, dtype=torch.int32)
    k_view, v_view = k_heads.transpose(1, 2), v_heads.transpose(1, 2)
    out, lse = salience.flash_attn_with_kvcache(q, k_view, v_view, cache_seqlens=seqlens,
                                                causal=True, return_softmax_lse=True)
    flash_out, flash_lse = salience.flash_attn_with_kvcache(
        q, k_view.contiguous(), v_view.contiguous(), cache_seqlens=seqlens, causal=True,
        return_softmax_lse=True)
    assert torch.equal(out, flash_out) and torch.equal(lse, flash_lse)
    ref_out, ref_lse = _oracle(q, k_view, v_view, lengths, None, causal=True)
    assert relative_error(out, ref_out) < TOLERANCE
    finite = ref_lse.isfinite()
    assert relative_error(lse[finite], ref_lse[finite]) < TOLERANCE
    assert torch.all(lse[~finite] == float("-inf"))


def test_numpy_cache_and_half_queries() -> None:
    rng = np.random.default_rng(2)
    q = rng.standard_normal((1, 1, 2, 8), dtype=np.float32)
    k_cache = rng.standard_normal((1, 10, 2, 8)).astype(np.float16)
    v_cache = rng.standard_normal((1, 10, 2, 8)).astype(np.float16)
    out = salience.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=7)
    ref_out, _ = _oracle(torch.from_numpy(q), torch.from_numpy(k_cache),
                         torch.from_numpy(v_cache), [7], None)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert relative_error(torch.from_numpy(out), ref_out) < TOLERANCE
    # A bfloat16 q (flash-attn's usual dtype) gives a bfloat16 out.
    q16 = torch.from_numpy(q).bfloat16()
    out16 = salience.flash_attn_with_kvcache(q16, torch.from_numpy(k_cache).bfloat16(),
                                             torch.from_numpy(v_cache).bfloat16(),
                                             cache_seqlens=7)
    assert isinstance(out16, torch.Tensor) and out16.dtype == torch.bfloat16
    assert relative_error(out16.float(), ref_out) < 2e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("page", [None, 64])
def test_16bit_queries_are_read_and_written_in_place(dtype: torch.dtype,
                                                     page: Optional[int]) -> None:
    """q in the cache's 16-bit dtype gives out in that dtype, computed from
    q as it is (no float32 copy) and rounded once: bitwise the float32 call
    on the same values, rounded. 3000 keys: the merge of splits writes out."""
    torch.manual_seed(4)
    lengths = [3000, 1]
    q = torch.randn(2, 2, 8, 64).to(dtype)
    k_cache = torch.randn(2, 3000, 2, 64).to(dtype)
    v_cache = torch.randn(2, 3000, 2, 64).to(dtype)
    table = None
    if page is not None:
        k_cache, table = _paged(k_cache, lengths, page, seed=2)
        v_cache, _ = _paged(v_cache, lengths, page, seed=2)
    seqlens = torch.tensor(lengths, dtype=torch.int32)
    out, lse = salience.flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=seqlens,
                                                block_table=table, causal=True,
                                                return_softmax_lse=True)
    out32, lse32 = salience.flash_attn_with_kvcache(q.float(), k_cache, v_cache,
                                                    cache_seqlens=seqlens, block_table=table,
                                                    causal=True, return_softmax_lse=True)
    assert out.dtype == dtype and out32.dtype == torch.float32
    assert torch.equal(out, out32.to(dtype)) and torch.equal(lse, lse32)
    ref_out, _ = _oracle(q, k_cache, v_cache, lengths, table, causal=True)
    assert relative_error(out32, ref_out) < TOLERANCE
    # NumPy float16 in, float16 out.
    if dtype == torch.float16:
        out_np = salience.flash_attn_with_kvcache(q.numpy(), k_cache.numpy(), v_cache.numpy(),
                                                  cache_seqlens=seqlens.numpy(),
                                                  block_table=None if table is None
                                                  else table.numpy(), causal=True)
        assert out_np.dtype == np.float16 and np.array_equal(out_np, out.numpy())


def test_bad_page_id_is_an_error_not_a_read() -> None:
    k_cache = torch.zeros(4, 16, 1, 8)
    table = torch.tensor([[0, 9]], dtype=torch.int32)  # page 9 of 4
    with pytest.raises(ValueError, match=r"block_table\[0\]\[1\]"):
        salience.flash_attn_with_kvcache(torch.zeros(1, 1, 1, 8), k_cache, k_cache,
                                         cache_seqlens=20, block_table=table)


def test_merge_of_two_halves_is_the_whole() -> None:
    torch.manual_seed(3)
    q = torch.randn(2, 1, 4, 16)
    k_cache = torch.randn(2, 64, 2, 16)
    v_cache = torch.randn(2, 64, 2, 16)

    def attend(first: int, count: int) -> Any:
        keys: Any = k_cache[:, first:]
        values: Any = v_cache[:, first:]
        return salience.flash_attn_with_kvcache(q, keys, values, cache_seqlens=count,
                                                return_softmax_lse=True)

    whole_out, whole_lse = attend(0, 64)
    a_out, a_lse = attend(0, 24)
    b_out, b_lse = attend(24, 40)
    out, lse = salience.merge_attention_states(a_out, a_lse, b_out, b_lse)
    assert relative_error(out, whole_out) < TOLERANCE
    assert relative_error(lse, whole_lse) < TOLERANCE
    # An empty side (no keys: lse -inf) passes the other through exactly.
    empty_out, empty_lse = attend(0, 0)
    assert torch.isneginf(empty_lse).all()
    out, lse = salience.merge_attention_states(empty_out, empty_lse, a_out, a_lse)
    assert torch.equal(out, a_out) and torch.equal(lse, a_lse)
    out, lse = salience.merge_attention_states(empty_out, empty_lse, empty_out, empty_lse)
    assert torch.equal(out, torch.zeros_like(out)) and torch.isneginf(lse).all()
