"""bfloat16 and float16 inputs of the Python entry points: the output comes
back in the input's dtype (computed with float32 accumulation), the inputs
are read in place through DLPack, and the error against an fp64 oracle on the
same 16-bit values stays within twice torch's own bf16/fp16 SDPA error (plus
a floor of one rounding of the output), as FlashAttention's tests judge it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import salience
import salience.flash_attn_interface as fa
from oracles import flash_reference, norm_error, sdpa_reference

LOW = [torch.bfloat16, torch.float16]
#Unit roundoff : the error of rounding the output once.
ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


def randn(*shape: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_within_twice_torch_error(dtype: torch.dtype, causal: bool) -> None:
    q, k, v = (randn(2, 4, 77, 64, dtype=dtype, seed=s) for s in (1, 2, 3))
    out = salience.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert out.dtype == dtype and out.shape == (2, 4, 77, 64)
    oracle = sdpa_reference(q, k, v, is_causal=causal)
    torch_error = norm_error(F.scaled_dot_product_attention(q, k, v, is_causal=causal), oracle)
    assert norm_error(out, oracle) <= 2 * torch_error + ROUNDOFF[dtype]


@pytest.mark.parametrize("dtype", LOW)
def test_flash_attn_func_gqa_window(dtype: torch.dtype) -> None:
    q = randn(1, 50, 8, 32, dtype=dtype, seed=4)
    k, v = (randn(1, 61, 2, 32, dtype=dtype, seed=s) for s in (5, 6))
    out, lse, _ = fa.flash_attn_func(q, k, v, causal=True, window_size=(16, 0),
                                     return_attn_probs=True)
    assert out.dtype == dtype and lse.dtype == torch.float32
    ref_out, ref_lse = flash_reference(q, k.repeat_interleave(4, dim=2),
                                       v.repeat_interleave(4, dim=2),
                                       causal=True, window=(16, 0))
#torch's bf16 math path on the same problem: the error to stay within.
    mask = torch.zeros(50, 61, dtype=torch.bool)
    for i in range(50):
        mask[i, max(0, i + 11 - 16):i + 11 + 1] = True
    torch_out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
        enable_gqa=True).transpose(1, 2)
    torch_error = norm_error(torch_out, ref_out)
    assert norm_error(out, ref_out) <= 2 * torch_error + ROUNDOFF[dtype]
    assert torch.allclose(lse.double(), ref_lse, atol=1e-2)


def test_mixed_dtypes_bf16_kv_float32_queries() -> None:
    q = randn(1, 3, 40, 64, dtype=torch.float32, seed=7)
    k, v = (randn(1, 3, 90, 64, dtype=torch.bfloat16, seed=s) for s in (8, 9))
    out = salience.attention(q, k, v, layout="bhnd")
    assert out.dtype == torch.float32  # out takes the queries' dtype
    oracle = sdpa_reference(q, k, v)
    assert norm_error(out, oracle) <= 1e-5


def test_key_and_value_dtypes_must_match() -> None:
    q = randn(1, 2, 8, 16, dtype=torch.bfloat16, seed=1)
    k = randn(1, 2, 8, 16, dtype=torch.bfloat16, seed=2)
    v = randn(1, 2, 8, 16, dtype=torch.float16, seed=3)
    with pytest.raises((TypeError, ValueError), match="v.dtype"):
        salience.scaled_dot_product_attention(q, k, v)


def test_inputs_are_read_in_place() -> None:
    """A strided bf16 view (every other head) goes to the kernel as it is."""
    base = randn(1, 8, 33, 64, dtype=torch.bfloat16, seed=10)
    q = base[:, ::2]
    k, v = (randn(1, 4, 33, 64, dtype=torch.bfloat16, seed=s) for s in (11, 12))
    out = salience.scaled_dot_product_attention(q, k, v)
    oracle = sdpa_reference(q, k, v)
    assert norm_error(out, oracle) <= ROUNDOFF[torch.bfloat16]


def test_numpy_float16() -> None:
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 30, 2, 16)).astype(np.float16) for _ in range(3))
    out = salience.attention(q, k, v)
    assert out.dtype == np.float16
    oracle, _ = flash_reference(*(torch.from_numpy(x) for x in (q, k, v)))
    assert norm_error(torch.from_numpy(out), oracle) <= 2 * ROUNDOFF[torch.float16]


@pytest.mark.parametrize("dtype", LOW)
def test_large_values_do_not_overflow(dtype: torch.dtype) -> None:
    """256 * 256 * 128 is past float16's range: sums must be float32."""
    q, k, v = (torch.full((1, 1, 40, 128), 256.0, dtype=dtype) for _ in range(3))
    out = salience.scaled_dot_product_attention(q, k, v)
    assert torch.equal(out, torch.full_like(out, 256.0))


@pytest.mark.parametrize("dtype", LOW)
def test_fully_masked_row_gives_zero(dtype: torch.dtype) -> None:
    q, k, v = (randn(1, 1, 4, 16, dtype=dtype, seed=s) for s in (1, 2, 3))
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[2] = False
    out = salience.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(out[0, 0, 2], torch.zeros(16, dtype=dtype))
    assert not math.isnan(out.float().sum().item())


def test_varlen_and_packed_variants_keep_the_dtype() -> None:
    """flash-attn's other entry points share the dtype handling: bf16 in,
    bf16 out, matching the float32 computation on the same values."""
    qkv = randn(1, 40, 3, 2, 32, dtype=torch.bfloat16, seed=13)
    out = fa.flash_attn_qkvpacked_func(qkv, causal=True)
    assert out.dtype == torch.bfloat16
    wide = fa.flash_attn_qkvpacked_func(qkv.float(), causal=True)
    assert norm_error(out, wide) <= ROUNDOFF[torch.bfloat16]

    q, k, v = (randn(30, 2, 32, dtype=torch.bfloat16, seed=s) for s in (14, 15, 16))
    cu = torch.tensor([0, 12, 30], dtype=torch.int32)
    out = fa.flash_attn_varlen_func(q, k, v, cu, cu, 18, 18, causal=True)
    assert out.dtype == torch.bfloat16
    wide = fa.flash_attn_varlen_func(q.float(), k.float(), v.float(), cu, cu, 18, 18,
                                     causal=True)
    assert norm_error(out, wide) <= ROUNDOFF[torch.bfloat16]
