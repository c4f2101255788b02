"""Every bad input raises ValueError or TypeError with a message that names
the argument; none crashes the interpreter. test_arguments.py runs every
argument of every entry point through a table of bad values."""

from __future__ import annotations

import math
import random
from typing import Any, Callable

import numpy as np
import pytest
import torch

import salience
from salience import _salience
from salience import flash_attn_interface as fa

sdpa = salience.scaled_dot_product_attention


def t(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape).to(dtype)


Q4, K4 = t(2, 3, 5, 8), t(2, 3, 6, 8)  # torch layout [B, H, L, E]
F4, FK4 = t(2, 5, 3, 8), t(2, 6, 3, 8)  # flash layout [B, L, H, E]
CU = torch.tensor([0, 2, 5], dtype=torch.int32)
P3, PK3 = t(5, 3, 8), t(5, 3, 8)

CASES = [
    # --- scaled_dot_product_attention
    ("sdpa rank 1", lambda: sdpa(t(8), t(8), t(8)), ValueError, "at least 2 axes"),
    ("sdpa head_dim", lambda: sdpa(Q4, t(2, 3, 6, 7), K4), ValueError, r"key.shape\[-1\] \(E\): expected 8"),
    ("sdpa seq of value", lambda: sdpa(Q4, K4, t(2, 3, 4, 8)), ValueError, r"value.shape\[-2\] \(S\)"),
    ("sdpa batch", lambda: sdpa(Q4, t(3, 3, 6, 8), t(3, 3, 6, 8)), ValueError, "do not broadcast"),
    ("sdpa heads without gqa", lambda: sdpa(Q4, t(2, 2, 6, 8), t(2, 2, 6, 8)), ValueError, "do not broadcast"),
    ("sdpa gqa not dividing", lambda: sdpa(t(2, 4, 5, 8), t(2, 3, 6, 8), t(2, 3, 6, 8), enable_gqa=True),
     ValueError, "enable_gqa"),
    ("sdpa float64", lambda: sdpa(Q4.double(), K4.double(), K4.double()), TypeError, r"query.dtype: expected float32, bfloat16 or float16, got torch.float64"),
    ("sdpa key/value dtypes", lambda: sdpa(Q4, K4.bfloat16(), K4), ValueError,
     r"v.dtype: expected bf16 \(k.dtype\), got f32"),
    ("sdpa int", lambda: sdpa(Q4, K4, K4.int()), TypeError, r"value.dtype: expected float32, bfloat16 or float16, got torch.int32"),
    ("sdpa meta device", lambda: sdpa(Q4.to("meta"), K4, K4), ValueError, "query is on device 'meta'"),
    ("sdpa list", lambda: sdpa([[1.0]], K4, K4), TypeError, "query: expected a torch.Tensor or a numpy.ndarray, got builtins.list"),
    ("sdpa mixed kinds", lambda: sdpa(Q4, K4.numpy(), K4), TypeError, "all torch tensors or all NumPy"),
    ("sdpa mask shape", lambda: sdpa(Q4, K4, K4, attn_mask=t(4, 6)), ValueError, r"attn_mask of shape \[4, 6\] does not broadcast"),
    ("sdpa mask rank", lambda: sdpa(Q4, K4, K4, attn_mask=t(1, 1, 1, 5, 6)), ValueError, "does not broadcast"),
    ("sdpa mask dtype", lambda: sdpa(Q4, K4, K4, attn_mask=t(5, 6).double()), TypeError, r"attn_mask.dtype: expected bool"),
    ("sdpa mask int", lambda: sdpa(Q4, K4, K4, attn_mask=t(5, 6).long()), TypeError, r"attn_mask.dtype"),
    ("sdpa mask device", lambda: sdpa(Q4, K4, K4, attn_mask=t(5, 6).to("meta")), ValueError, "attn_mask is on device 'meta'"),
    ("sdpa dropout one", lambda: sdpa(Q4, K4, K4, dropout_p=1.0), ValueError, r"dropout_p: expected a probability in \[0, 1\), got 1.0"),
    ("sdpa dropout range", lambda: sdpa(Q4, K4, K4, dropout_p=-0.5), ValueError, "dropout_p"),
    ("sdpa scale nan", lambda: sdpa(Q4, K4, K4, scale=math.nan), ValueError, "scale: expected a finite value"),
    ("sdpa head_dim too large", lambda: sdpa(t(1, 1, 2, 600), t(1, 1, 2, 600), t(1, 1, 2, 600)), ValueError,
     r"query.shape\[-1\] \(E\): expected 1..512, got 600"),
    # --- flash_attn_func
    ("flash rank", lambda: salience.flash_attn_func(Q4[0], K4[0], K4[0]), ValueError, "expected 4 axes"),
    ("flash heads", lambda: salience.flash_attn_func(F4, t(2, 6, 2, 8), t(2, 6, 2, 8)), ValueError, r"not a multiple of k.shape\[2\]"),
    ("flash head_dim", lambda: salience.flash_attn_func(F4, t(2, 6, 3, 4), t(2, 6, 3, 4)), ValueError, r"k.shape\[3\] \(head_dim\): expected 8"),
    ("flash batch", lambda: salience.flash_attn_func(F4, t(1, 6, 3, 8), t(1, 6, 3, 8)), ValueError, r"k.shape\[0\] \(batch\)"),
    ("flash v seq", lambda: salience.flash_attn_func(F4, FK4, t(2, 7, 3, 8)), ValueError, r"v.shape\[1\]"),
    ("flash dtype", lambda: salience.flash_attn_func(F4.double(), FK4, FK4), TypeError,
     "q.dtype: expected float32, bfloat16 or float16, got torch.float64"),
    ("flash alibi size", lambda: salience.flash_attn_func(F4, FK4, FK4, alibi_slopes=torch.rand(5)), ValueError, "alibi_slopes.size"),
    ("flash alibi dtype", lambda: salience.flash_attn_func(F4, FK4, FK4, alibi_slopes=torch.ones(3, dtype=torch.int64)), TypeError, "alibi_slopes.dtype"),
    ("flash softcap", lambda: salience.flash_attn_func(F4, FK4, FK4, softcap=-1.0), ValueError, "softcap"),
    ("flash window", lambda: salience.flash_attn_func(F4, FK4, FK4, window_size=(1,)), ValueError, "window_size"),
    ("flash dropout nan", lambda: salience.flash_attn_func(F4, FK4, FK4, dropout_p=math.nan), ValueError, "dropout_p"),
    ("flash qkvpacked", lambda: salience.flash_attn_qkvpacked_func(t(2, 5, 2, 3, 8)), ValueError, "qkv: expected shape"),
    # --- flash_attn_varlen_func
    ("varlen rank", lambda: salience.flash_attn_varlen_func(F4, FK4, FK4, CU, CU, 3, 3), ValueError, "expected 3 axes"),
    ("varlen cu start", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, torch.tensor([1, 3, 5], dtype=torch.int32), CU, 5, 3),
     ValueError, r"cu_seqlens_q\[0\]: expected 0, got 1"),
    ("varlen cu decreasing", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, torch.tensor([0, 4, 2], dtype=torch.int32), CU, 5, 3),
     ValueError, r"cu_seqlens_q\[2\]: expected >= 4"),
    ("varlen cu too long", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, CU, torch.tensor([0, 2, 9], dtype=torch.int32), 3, 7),
     ValueError, r"cu_seqlens_k\[2\] \(total rows\): expected <= 5"),
    ("varlen cu sizes", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, CU, torch.tensor([0, 5], dtype=torch.int32), 3, 5),
     ValueError, r"cu_seqlens_k.size\(\): expected 3"),
    ("varlen cu float", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, CU.float(), CU, 3, 3), TypeError, "cu_seqlens_q.dtype"),
    ("varlen cu 2-D", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, CU[None], CU, 3, 3), ValueError, "cu_seqlens_q: expected a 1-D"),
    ("varlen cu overflow", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, torch.tensor([0, 2**40]), CU, 3, 3), ValueError, "int32"),
    ("varlen max_seqlen", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, CU, CU, 2, 3), ValueError, "max_seqlen_q: expected >= 3"),
    ("varlen block_table pages", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, CU, CU, 3, 3, block_table=CU),
     ValueError, r"k: expected 4 axes \[batch or num_blocks"),
    ("varlen block_table rank", lambda: salience.flash_attn_varlen_func(P3, t(2, 4, 3, 8), t(2, 4, 3, 8), CU, CU, 3, 3,
                                                                        block_table=CU),
     ValueError, r"block_table: expected int32 \[batch, max_blocks_per_seq\], got shape \[3\]"),
    ("varlen empty cu_seqlens", lambda: salience.flash_attn_varlen_func(P3, PK3, PK3, CU[:0], CU[:0], 3, 3),
     ValueError, "cu_seqlens_q: expected at least 2 entries"),
    # --- flash_attn_with_kvcache
    ("kvcache rotary without k", lambda: salience.flash_attn_with_kvcache(F4, FK4, FK4, rotary_cos=t(6, 4), rotary_sin=t(6, 4)),
     ValueError, "rotary_cos: rotary embedding needs k and v"),
    ("kvcache rotary without sin", lambda: salience.flash_attn_with_kvcache(F4, FK4, FK4, rotary_cos=t(6, 4)),
     ValueError, "rotary_sin: expected an array with rotary_cos, got None"),
    ("kvcache leftpad", lambda: salience.flash_attn_with_kvcache(F4, FK4, FK4, cache_seqlens=3, cache_leftpad=[4, 0]),
     ValueError, r"cache_leftpad\[0\]: expected 0..3 \(cache_seqlens\[0\]\), got 4"),
    ("kvcache batch_idx", lambda: salience.flash_attn_with_kvcache(F4, FK4, FK4, cache_batch_idx=[0, 2]),
     ValueError, r"cache_batch_idx\[1\]: expected a row of k_cache in \[0, 2\), got 2"),
    ("kvcache overflow", lambda: salience.flash_attn_with_kvcache(F4, FK4, FK4, t(2, 2, 3, 8), t(2, 2, 3, 8), cache_seqlens=5),
     ValueError, "cache_seqlens"),
    ("kvcache k without v", lambda: salience.flash_attn_with_kvcache(F4, FK4, FK4, t(2, 2, 3, 8)), ValueError, "k and v"),
    ("kvcache block_table overflow (docs/python.md)", lambda: salience.flash_attn_with_kvcache(
        F4, FK4, FK4, cache_seqlens=3, block_table=torch.tensor([[2**32 + 2], [0]])),
     ValueError, r"block_table: expected values in int32's range \[-2147483648, 2147483647\], got 4294967298"),
    ("flash causal int (docs/python.md)", lambda: salience.flash_attn_func(F4, FK4, FK4, causal=1),
     TypeError, "causal: expected True or False, got builtins.int 1"),
    ("attention out leaf (docs/python.md)", lambda: salience.attention(
        F4, FK4, FK4, out=torch.zeros(2, 5, 3, 8, requires_grad=True)),
     RuntimeError, "out: a leaf tensor that requires grad cannot be written in place by salience"),
    # --- attention
    ("attention layout", lambda: salience.attention(F4, FK4, FK4, layout="nbhd"), ValueError, "layout"),
    ("attention causal", lambda: salience.attention(F4, FK4, FK4, causal="diagonal"), ValueError, "causal: expected"),
    ("attention window_align", lambda: salience.attention(F4, FK4, FK4, window_align="middle"), ValueError, "window_align"),
    ("attention seqlens", lambda: salience.attention(F4, FK4, FK4, seqlens_q=[5, 9]), ValueError, r"seqlens_q\[1\]: expected <= 5"),
    ("attention seqlens size", lambda: salience.attention(F4, FK4, FK4, seqlens_k=[1]), ValueError, r"seqlens_k.size\(\): expected 2"),
    ("attention padding and varlen", lambda: salience.attention(P3, PK3, PK3, seqlens_q=[1], cu_seqlens_q=CU, cu_seqlens_k=CU),
     ValueError, "cannot be combined"),
    ("attention mask shape", lambda: salience.attention(F4, FK4, FK4, mask=t(2, 3, 4, 6)), ValueError, r"mask.shape\[2\] \(seq_q\): expected 1 or 5"),
    ("attention mask rank", lambda: salience.attention(F4, FK4, FK4, mask=t(1, 1, 1, 5, 6)), ValueError, "at most 4 axes"),
    ("attention out shape", lambda: salience.attention(F4, FK4, FK4, out=t(2, 5, 3, 4)), ValueError, r"out.shape\[3\]"),
    ("attention out rank", lambda: salience.attention(F4, FK4, FK4, out=t(5, 3, 8)), ValueError, "out: expected 4 axes"),
    ("attention out dtype", lambda: salience.attention(F4, FK4, FK4, out=t(2, 5, 3, 8).double()), TypeError, "out.dtype"),
    ("attention out broadcast", lambda: salience.attention(F4, FK4, FK4, out=t(1, 5, 3, 8).expand(2, 5, 3, 8)),
     ValueError, r"out.strides\[0\] \(batch\): expected non-zero"),
    ("attention ranks", lambda: salience.attention(F4, FK4[0], FK4), ValueError, "expected 4 axes"),
    # --- the module itself
    ("module rank", lambda: _salience.forward(t(1, 1, 1, 1, 1), FK4, FK4, F4), ValueError, "q.rank: expected at most 4"),
    ("module empty cu_seqlens", lambda: _salience.forward(F4[:1], FK4[:1], FK4[:1], F4[:1], cu_seqlens_q=CU[:0].numpy(),
                                                      cu_seqlens_k=CU[:0].numpy()),
     ValueError, "cu_seqlens_q: expected num_seqs"),
    ("module dtype", lambda: _salience.forward(F4.double(), FK4, FK4, F4), TypeError, "q.dtype: expected float32, bfloat16, float16, got float64"),
]


@pytest.mark.parametrize("call, error, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises(call: Callable[[], Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_numpy_errors_name_numpy_dtypes() -> None:
    q = np.zeros((2, 3, 5, 8), np.float64)
    with pytest.raises(TypeError, match="query.dtype: expected float32, bfloat16 or float16, got float64"):
        sdpa(q, q, q)


def test_random_malformed_calls_never_crash() -> None:
    """Shapes, strides and options drawn at random, most of them invalid:
    each call returns or raises one of the documented exceptions."""
    r = random.Random(5)
    raised = 0
    for _ in range(300):
        dims = lambda: tuple(r.choice([0, 1, 2, 3, 5]) for _ in range(r.choice([3, 4, 4, 4, 5])))  # noqa: E731
        q, k, v = torch.randn(dims()), torch.randn(dims()), torch.randn(dims())
        if r.random() < 0.3:
            k = k.transpose(0, -1)
        options = dict(
            causal=r.choice([False, True, "top_left"]),
            window_left=r.choice([-1, 0, 2]), seqlens_k=r.choice([None, [1], [0, 9], [2, 2, 2]]),
            mask=r.choice([None, torch.rand(dims()) < 0.5, torch.randn(dims())]),
            alibi_slopes=r.choice([None, torch.rand(r.choice([1, 2, 3]))]),
            softcap=r.choice([0.0, 1.0, -2.0]), scale=r.choice([None, 0.5, math.inf]))
        try:
            salience.attention(q, k, v, **options)
        except (ValueError, TypeError):
            raised += 1
    assert raised > 100
