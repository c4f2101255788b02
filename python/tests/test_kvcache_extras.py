"""flash-attn's KV-cache extras against plain fp64 references written here
from flash-attn's documented semantics (flash_attn_interface.py, and the
reference of its test_flash_attn_kvcache):

- flash_attn_with_kvcache's rotary_cos/rotary_sin (k rotated at positions
  cache_seqlens + t; q at cache_seqlens + i when causal or local, else all
  of q at cache_seqlens; interleaved and GPT-NeoX pairs), cache_leftpad
  (keys start at that cache position; causal, windows and ALiBi count from
  there) and cache_batch_idx (entry b reads cache row cache_batch_idx[b]);
- flash_attn_varlen_func with block_table (packed queries against a paged
  cache, bottom-right per sequence);
- merge_attention_states on bfloat16 and float16 states.
"""

from __future__ import annotations

import random
from typing import Any, List, Optional, Tuple

import numpy as np
import pytest
import torch

import salience
from oracles import flash_reference, relative_error, varlen_reference

TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
         interleaved: bool) -> torch.Tensor:
    """x [B, S, H, D] rotated in fp64 at positions [B, S]: pairs (2i, 2i+1)
    when interleaved, else (i, i + rotary_dim / 2); features past
    rotary_dim unchanged."""
    x = x.double()
    c = cos.double()[positions][:, :, None, :]
    s = sin.double()[positions][:, :, None, :]
    dim = 2 * cos.shape[1]
    if interleaved:
        a, b = x[..., 0:dim:2], x[..., 1:dim:2]
        turned = torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)
    else:
        a, b = x[..., :dim // 2], x[..., dim // 2:dim]
        turned = torch.cat((a * c - b * s, a * s + b * c), dim=-1)
    return torch.cat((turned, x[..., dim:]), dim=-1)


def _paged(cache: torch.Tensor, page: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A contiguous cache [B, N, H, D] as shuffled pages plus two spare
    pages, and its block table."""
    batch, capacity = cache.shape[:2]
    per_seq = -(-capacity // page)
    order = torch.randperm(batch * per_seq + 2, generator=torch.Generator().manual_seed(seed))
    pages = torch.full((batch * per_seq + 2, page) + tuple(cache.shape[2:]), float("nan"),
                       dtype=cache.dtype)
    table = torch.empty(batch, per_seq, dtype=torch.int32)
    for b in range(batch):
        for p in range(per_seq):
            rows = cache[b, p * page:(p + 1) * page]
            pages[order[b * per_seq + p], :rows.shape[0]] = rows
            table[b, p] = order[b * per_seq + p]
    return pages, table


def _gather(pages: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The contiguous [B, max_blocks * page, H, D] view of a paged cache."""
    return pages[table.long()].flatten(1, 2)


def _kvcache_case(seed: int) -> None:
    r = random.Random(seed)
    dtype = r.choice([torch.float32, torch.float32, torch.bfloat16])
    batch, heads, heads_k = 3, *r.choice([(4, 4), (4, 2), (6, 1)])
    dim = r.choice([16, 40, 64])
    capacity = 48
    layout = r.choice(["contiguous", "paged", "batch_idx"])
    page = r.choice([5, 16])
    seq_q = r.choice([1, 3])
    seq_new = r.choice([1, seq_q]) if r.random() < 0.85 else 0
    causal, local = r.random() < 0.5, r.random() < 0.3
    window = (r.randint(0, 10), r.randint(0, 3)) if local else (-1, -1)
    rotary_dim = r.choice([0, dim // 2 // 2 * 2, dim]) if seq_new else 0
    interleaved = r.random() < 0.5
    alibi = torch.rand(batch, heads) * 0.3 if r.random() < 0.3 else None
    leftpad = r.random() < 0.5
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(dtype)

    rows = batch + 2 if layout == "batch_idx" else batch
    k_cache, v_cache = randn(rows, capacity, heads_k, dim), randn(rows, capacity, heads_k, dim)
    q = randn(batch, seq_q, heads, dim)
    k = randn(batch, seq_new, heads_k, dim) if seq_new else None
    v = randn(batch, seq_new, heads_k, dim) if seq_new else None
    seqlens = torch.tensor([r.randint(0, capacity - max(seq_new, seq_q)) for _ in range(batch)],
                           dtype=torch.int32)
    pad = torch.tensor([r.randint(0, int(n)) if leftpad else 0 for n in seqlens],
                       dtype=torch.int32)
    batch_idx = torch.randperm(rows, generator=generator)[:batch].int() \
        if layout == "batch_idx" else None
    angle = torch.rand(capacity, rotary_dim // 2, generator=generator) * 6.3
    cos, sin = (angle.cos().to(dtype), angle.sin().to(dtype)) if rotary_dim else (None, None)

    # The reference: the cache rows each entry reads, the new rows rotated
    # and written at cache_seqlens, q rotated, then attention over cache
    # positions cache_leftpad .. cache_seqlens + seqlen_new - 1.
    rows_of = batch_idx.long() if batch_idx is not None else torch.arange(batch)
    k_ref, v_ref = k_cache[rows_of].double(), v_cache[rows_of].double()
    positions = seqlens.long()[:, None]
    q_ref = q.double()
    if rotary_dim:
        per_row = causal or local
        q_positions = positions + (torch.arange(seq_q) if per_row else 0)
        q_ref = rope(q, cos, sin, q_positions.expand(batch, seq_q), interleaved)
    k_rows = (rope(k, cos, sin, positions + torch.arange(seq_new), interleaved)
              if rotary_dim and seq_new else (k.double() if seq_new else None))
    for b in range(batch):
        if seq_new:
            n = int(seqlens[b])
            k_ref[b, n:n + seq_new] = k_rows[b].to(dtype).double()  # stored in the cache dtype
            v_ref[b, n:n + seq_new] = v[b].double()

    table = None
    k_arg, v_arg = k_cache.clone(), v_cache.clone()
    if layout == "paged":
        k_arg, table = _paged(k_arg, page, seed)
        v_arg, _ = _paged(v_arg, page, seed)
    out, lse = salience.flash_attn_with_kvcache(
        q, k_arg, v_arg, k, v, rotary_cos=cos, rotary_sin=sin, cache_seqlens=seqlens,
        cache_batch_idx=batch_idx, cache_leftpad=pad if leftpad else None, block_table=table,
        causal=causal, window_size=window, rotary_interleaved=interleaved,
        alibi_slopes=alibi, return_softmax_lse=True)
    what = f"seed {seed}: {layout} {dtype} rotary {rotary_dim} leftpad {leftpad}"
    for b in range(batch):
        begin, end = int(pad[b]), int(seqlens[b]) + seq_new
        ref_out, ref_lse = flash_reference(
            q_ref[b:b + 1], k_ref[b:b + 1, begin:end], v_ref[b:b + 1, begin:end],
            causal=causal, window=window, alibi=None if alibi is None else alibi[b])
        assert relative_error(out[b:b + 1].float(), ref_out) < TOLERANCE[dtype], what
        finite = torch.isfinite(ref_lse)
        assert torch.equal(torch.isneginf(lse[b:b + 1]), ~finite), what
        assert relative_error(lse[b:b + 1][finite], ref_lse[finite]) < TOLERANCE[dtype], what
    # The cache after the append holds the rotated new rows.
    written = _gather(k_arg, table) if table is not None else k_arg[rows_of]
    for b in range(batch):
        n = int(seqlens[b])
        if seq_new:
            assert relative_error(written[b, n:n + seq_new], k_ref[b, n:n + seq_new]) \
                < TOLERANCE[dtype], what


@pytest.mark.parametrize("seed", range(48))
def test_kvcache_extras_match_the_reference(seed: int) -> None:
    _kvcache_case(seed)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rotary_positions(interleaved: bool) -> None:
    """Positions by hand: one entry, cache_seqlens 5, two new rows and two
    queries; causal rotates the queries at 5 and 6, non-causal both at 5."""
    torch.manual_seed(4)
    q, k, v = torch.randn(1, 2, 2, 8), torch.randn(1, 2, 2, 8), torch.randn(1, 2, 2, 8)
    angle = torch.rand(16, 4) * 6.3
    cos, sin = angle.cos(), angle.sin()
    for causal, q_positions in ((True, [5, 6]), (False, [5, 5])):
        cache = torch.zeros(1, 16, 2, 8)
        values = torch.zeros(1, 16, 2, 8)
        out = salience.flash_attn_with_kvcache(q, cache, values, k, v, rotary_cos=cos,
                                               rotary_sin=sin, cache_seqlens=5, causal=causal,
                                               rotary_interleaved=interleaved)
        k_ro = rope(k, cos, sin, torch.tensor([[5, 6]]), interleaved)
        assert relative_error(cache[:, 5:7], k_ro) < 1e-6
        q_ro = rope(q, cos, sin, torch.tensor([q_positions]), interleaved)
        ref, _ = flash_reference(q_ro, cache[:, :7], values[:, :7], causal=causal)
        assert relative_error(out, ref) < 2e-5


def test_rotary_numpy_float16() -> None:
    rng = np.random.default_rng(5)
    q = rng.standard_normal((2, 1, 2, 16)).astype(np.float16)
    k = rng.standard_normal((2, 1, 2, 16)).astype(np.float16)
    cache = np.zeros((2, 8, 2, 16), np.float16)
    angle = rng.random((8, 8)) * 6.3
    cos, sin = np.cos(angle).astype(np.float16), np.sin(angle).astype(np.float16)
    out = salience.flash_attn_with_kvcache(q, cache, cache.copy(), k, k, rotary_cos=cos,
                                           rotary_sin=sin, cache_seqlens=[2, 6])
    assert isinstance(out, np.ndarray) and out.dtype == np.float16
    k_ro = rope(torch.from_numpy(k), torch.from_numpy(cos), torch.from_numpy(sin),
                torch.tensor([[2], [6]]), True)
    assert relative_error(torch.from_numpy(cache[0, 2]).double(), k_ro[0, 0]) < 1e-3


def test_batch_idx_reads_the_rows_in_place() -> None:
    """cache_batch_idx selects rows of one cache without a copy: rows it
    does not name are neither read (NaN) nor written."""
    torch.manual_seed(6)
    k_cache = torch.full((4, 10, 1, 8), float("nan"))
    v_cache = torch.full((4, 10, 1, 8), float("nan"))
    k_cache[[3, 1], :4], v_cache[[3, 1], :4] = torch.randn(2, 4, 1, 8), torch.randn(2, 4, 1, 8)
    q, new = torch.randn(2, 1, 2, 8), torch.randn(2, 1, 1, 8)
    out = salience.flash_attn_with_kvcache(q, k_cache, v_cache, new, new, cache_seqlens=4,
                                           cache_batch_idx=torch.tensor([3, 1], dtype=torch.int32))
    assert torch.equal(k_cache[3, 4], new[0, 0]) and torch.equal(k_cache[1, 4], new[1, 0])
    assert torch.isnan(k_cache[[0, 2]]).all()
    for b, row in enumerate((3, 1)):
        ref, _ = flash_reference(q[b:b + 1], k_cache[row:row + 1, :5], v_cache[row:row + 1, :5])
        assert relative_error(out[b:b + 1], ref) < 2e-5


# --- flash_attn_varlen_func with block_table ---------------------------------

def _varlen_paged_case(seed: int, dtype: torch.dtype = torch.float32, numpy: bool = False) -> None:
    r = random.Random(seed)
    num_seqs = r.randint(1, 4)
    uniform = r.random() < 0.4
    length = r.choice([1, 3, 8])
    lens_q = [length] * num_seqs if uniform else [r.choice([0, 1, 4, 9]) for _ in range(num_seqs)]
    lens_k = [r.choice([0, 1, 9, 30]) for _ in range(num_seqs)]
    heads, heads_k = r.choice([(4, 4), (4, 2), (6, 1)])
    dim, page = r.choice([16, 32]), r.choice([4, 16])
    causal = r.random() < 0.6
    window = (r.randint(0, 8), r.randint(0, 2)) if r.random() < 0.3 else (-1, -1)
    alibi = r.choice([None, torch.rand(heads), torch.rand(num_seqs, heads)])
    softcap = r.choice([0.0, 4.0])
    extra = r.choice([0, 2])
    generator = torch.Generator().manual_seed(seed)
    capacity = max(lens_k + [1]) + 3
    keys = torch.randn(num_seqs, capacity, heads_k, dim, generator=generator).to(dtype)
    values = torch.randn(num_seqs, capacity, heads_k, dim, generator=generator).to(dtype)
    k_pages, table = _paged(keys, page, seed)
    v_pages, _ = _paged(values, page, seed)
    cu_q = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    q = torch.randn(int(cu_q[-1]) + extra, heads, dim, generator=generator).to(dtype)
    arguments: List[Any] = [q, k_pages, v_pages, torch.from_numpy(cu_q), torch.from_numpy(cu_k),
                            max(lens_q), max(lens_k)]
    options = dict(causal=causal, window_size=window, softcap=softcap, alibi_slopes=alibi,
                   block_table=table, return_attn_probs=True)
    if numpy:
        arguments = [a.numpy() if isinstance(a, torch.Tensor) else a for a in arguments]
        options = {n: a.numpy() if isinstance(a, torch.Tensor) else a for n, a in options.items()}
    out, lse, _ = salience.flash_attn_varlen_func(*arguments, **options)
    out, lse = torch.as_tensor(out), torch.as_tensor(lse)
    # The reference: each sequence's keys gathered into a packed k, v.
    packed_k = torch.cat([keys[s, :lens_k[s]] for s in range(num_seqs)])
    packed_v = torch.cat([values[s, :lens_k[s]] for s in range(num_seqs)])
    ref_out, ref_lse = varlen_reference(q, packed_k, packed_v, cu_q.tolist(), cu_k.tolist(),
                                        alibi=alibi, causal=causal, window=window,
                                        softcap=softcap)
    what = f"seed {seed}: lens_q {lens_q} lens_k {lens_k} page {page}"
    assert out.shape == (q.shape[0], heads, dim) and lse.shape == (heads, q.shape[0])
    assert relative_error(out.float(), ref_out) < TOLERANCE[dtype], what
    assert torch.equal(torch.isneginf(lse), torch.isneginf(ref_lse)), what
    finite = torch.isfinite(ref_lse)
    assert relative_error(lse[finite], ref_lse[finite]) < TOLERANCE[dtype], what
    assert torch.all(out[int(cu_q[-1]):] == 0), what


@pytest.mark.parametrize("seed", range(30))
def test_varlen_with_block_table_matches_the_reference(seed: int) -> None:
    _varlen_paged_case(seed)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_varlen_with_block_table_16bit(dtype: torch.dtype) -> None:
    for seed in range(4):
        _varlen_paged_case(100 + seed, dtype)


def test_varlen_with_block_table_numpy() -> None:
    for seed in range(4):
        _varlen_paged_case(200 + seed, numpy=True)


def test_varlen_with_block_table_equals_kvcache_decode() -> None:
    """A decode step written as varlen (one query per sequence) gives what
    flash_attn_with_kvcache gives on the same pages, bit for bit."""
    torch.manual_seed(7)
    pages = torch.randn(12, 8, 2, 16)
    table = torch.tensor([[3, 7, 1], [0, 11, 5]], dtype=torch.int32)
    q = torch.randn(2, 1, 4, 16)
    lengths = torch.tensor([17, 24], dtype=torch.int32)
    expected = salience.flash_attn_with_kvcache(q, pages, pages, cache_seqlens=lengths,
                                                block_table=table, causal=True)
    cu_k = torch.tensor([0, 17, 41], dtype=torch.int32)
    got = salience.flash_attn_varlen_func(q[:, 0], pages, pages, torch.tensor([0, 1, 2]), cu_k,
                                          1, 24, causal=True, block_table=table)
    assert torch.equal(got, expected[:, 0])


# --- merge_attention_states in 16 bits --------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_merge_16bit_states(dtype: torch.dtype) -> None:
    """bf16/fp16 states merge as their float32 values do, rounded once."""
    torch.manual_seed(8)
    out_a, out_b = torch.randn(2, 3, 4, 16).to(dtype), torch.randn(2, 3, 4, 16).to(dtype)
    lse_a, lse_b = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    lse_b[0, 1, 2] = float("-inf")
    out, lse = salience.merge_attention_states(out_a, lse_a, out_b, lse_b)
    out32, lse32 = salience.merge_attention_states(out_a.float(), lse_a, out_b.float(), lse_b)
    assert out.dtype == dtype and lse.dtype == torch.float32
    assert torch.equal(out, out32.to(dtype)) and torch.equal(lse, lse32)
    assert torch.equal(out[0, 2, 1], out_a[0, 2, 1])  # an empty side passes the other
    if dtype == torch.float16:
        out_np, _ = salience.merge_attention_states(out_a.numpy(), lse_a.numpy(),
                                                    out_b.numpy(), lse_b.numpy())
        assert out_np.dtype == np.float16 and np.array_equal(out_np, out.numpy())
