"""salience.attention: the C++ library's options by keyword."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import salience
from oracles import flash_reference, relative_error, sdpa_reference

TOLERANCE = 5e-6


def test_layouts_are_views_of_one_another() -> None:
    q, k, v = torch.randn(2, 9, 4, 16), torch.randn(2, 12, 2, 16), torch.randn(2, 12, 2, 24)
    bnhd = salience.attention(q, k, v, causal="bottom_right")
    bhnd = salience.attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                              layout="bhnd", causal="bottom_right")
    assert bnhd.shape == (2, 9, 4, 24) and bhnd.shape == (2, 4, 9, 24)
    assert bhnd.is_contiguous() and bnhd.is_contiguous()
    assert torch.equal(bnhd, bhnd.transpose(1, 2))


def test_causal_true_is_bottom_right() -> None:
    q, k = torch.randn(1, 3, 2, 8), torch.randn(1, 7, 2, 8)
    assert torch.equal(salience.attention(q, k, k, causal=True),
                       salience.attention(q, k, k, causal="bottom_right"))
    top_left = salience.attention(q, k, k, causal="top_left")
    assert relative_error(top_left, flash_reference(q, k[:, :3], k[:, :3], causal=True)[0]) < TOLERANCE


def test_without_batch_axis() -> None:
    q, k = torch.randn(9, 4, 16), torch.randn(12, 4, 16)
    out, lse = salience.attention(q, k, k, return_lse=True)
    assert out.shape == (9, 4, 16) and lse.shape == (4, 9)
    batched, batched_lse = salience.attention(q[None], k[None], k[None], return_lse=True)
    assert torch.equal(out, batched[0]) and torch.equal(lse, batched_lse[0])


def test_out_is_written_in_place() -> None:
    q = torch.randn(1, 5, 2, 8)
    out = torch.full((1, 2, 5, 8), math.nan).transpose(1, 2)  # a strided view
    result = salience.attention(q, q, q, out=out)
    assert result is out
    assert torch.equal(out, salience.attention(q, q, q))


def test_padding_rows_are_zero_and_padded_keys_unread() -> None:
    q, k, v = torch.randn(3, 6, 2, 8), torch.randn(3, 9, 2, 8), torch.randn(3, 9, 2, 8)
    seqlens_q, seqlens_k = [6, 2, 0], [9, 4, 3]
    for b, length in enumerate(seqlens_k):
        k[b, length:], v[b, length:] = math.nan, math.nan
    out, lse = salience.attention(q, k, v, seqlens_q=seqlens_q, seqlens_k=seqlens_k,
                                  causal=True, return_lse=True)
    for b in range(3):
        lq, lk = seqlens_q[b], seqlens_k[b]
        assert torch.all(out[b, lq:] == 0) and torch.all(torch.isneginf(lse[b, :, lq:]))
        if lq:
            exact, _ = flash_reference(q[b:b + 1, :lq], k[b:b + 1, :lk], v[b:b + 1, :lk], causal=True)
            assert relative_error(out[b:b + 1, :lq], exact) < TOLERANCE


def test_top_left_window() -> None:
    q, k = torch.randn(1, 5, 1, 8), torch.randn(1, 9, 1, 8)
    out = salience.attention(q, k, k, window_left=1, window_right=2, window_align="top_left")
    i, j = torch.arange(5)[:, None], torch.arange(9)[None, :]
    visible = (j >= i - 1) & (j <= i + 2)
    exact = sdpa_reference(q.transpose(1, 2), k.transpose(1, 2), k.transpose(1, 2),
                           attn_mask=visible).transpose(1, 2)
    assert relative_error(out, exact) < TOLERANCE


@pytest.mark.parametrize("shape", [(9, 11), (1, 11), (9, 1), (2, 1, 9, 11), (1, 3, 1, 11), (3, 9, 11)])
def test_mask_broadcast_forms(shape: tuple) -> None:
    q, k = torch.randn(2, 9, 3, 8), torch.randn(2, 11, 3, 8)
    mask = torch.randn(shape)
    out = salience.attention(q, k, k, mask=mask)
    full = mask.reshape((1,) * (4 - mask.dim()) + tuple(shape))  # [batch, heads, seq_q, seq_k]
    exact = sdpa_reference(q.transpose(1, 2), k.transpose(1, 2), k.transpose(1, 2),
                           attn_mask=full).transpose(1, 2)
    assert relative_error(out, exact) < TOLERANCE


def test_reference_and_fused_kernels_agree() -> None:
    q, k = torch.randn(2, 33, 4, 64), torch.randn(2, 65, 2, 64)
    options = dict(causal="bottom_right", softcap=20.0, alibi_slopes=torch.rand(4),
                   window_left=16, return_lse=True)
    fused, fused_lse = salience.attention(q, k, k, **options)
    ref, ref_lse = salience.attention(q, k, k, reference=True, **options)
    assert relative_error(fused, ref) < TOLERANCE
    assert relative_error(fused_lse, ref_lse) < TOLERANCE


def test_numpy_and_torch_agree() -> None:
    q, k = torch.randn(2, 7, 2, 8), torch.randn(2, 7, 2, 8)
    mask = torch.rand(7, 7) < 0.5
    ours_torch = salience.attention(q, k, k, mask=mask, scale=0.4)
    ours_numpy = salience.attention(q.numpy(), k.numpy(), k.numpy(), mask=mask.numpy(), scale=0.4)
    assert isinstance(ours_numpy, np.ndarray)
    assert np.array_equal(ours_torch.numpy(), ours_numpy)


def test_negative_strides_are_copied() -> None:
    q = np.random.default_rng(0).standard_normal((1, 6, 2, 8), dtype=np.float32)
    flipped = q[:, ::-1]
    assert np.array_equal(salience.attention(flipped, q, q),
                          salience.attention(np.ascontiguousarray(flipped), q, q))


def test_num_threads() -> None:
    q = torch.randn(1, 64, 2, 32)
    assert torch.equal(salience.attention(q, q, q, num_threads=1), salience.attention(q, q, q))
    assert salience.get_num_threads() >= 1
    with pytest.raises(ValueError, match="num_threads"):
        salience.set_num_threads(-1)
