"""Every argument of every entry point, given a bad value, raises TypeError
(wrong type) or ValueError (wrong value) naming the argument: never
nanobind's "incompatible function arguments" dump, an OverflowError naming
nothing, a comparison error, or a silently truncated value (issue 23).
Also: integer arguments are never narrowed, empty offsets are no varlen
batch, and the array arguments of a call are all of one kind."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest
import torch

import salience
from salience import _salience
from salience import flash_attn_interface as fa


def _i32(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int32)


BOOLS = [1, 0, None, "yes", 1.0]
REALS = ["abc", True, [1.0], b"1"]
INT64S = [1.5, 2**63, -(2**63) - 1, "3", True, None]
# Index arrays: values outside int32 in any integer type, non-integers,
# wrong ranks, objects that are no array.
INDICES = [torch.tensor([0, 2**32 + 2]), np.array([0, 2**63], dtype=np.uint64),
           [0, 2**40], torch.tensor([0.0, 1.0]), [0, 1.5], torch.zeros(2, 2, dtype=torch.int32),
           "x"]
# The same for a 2-D table: INDICES with a wrong rank of its own.
TABLES = [torch.tensor([[0, 2**32 + 2]]), np.array([[0, 2**63]], dtype=np.uint64), [[0, 2**40]],
          torch.tensor([[0.0, 1.0]]), [[0, 1.5]], torch.zeros(2, 2, 2, dtype=torch.int32), "x"]
READ_ONLY = np.broadcast_to(np.zeros((1, 1, 1, 1), np.float32), (2, 5, 4, 8))


def _sdpa() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.scaled_dot_product_attention, dict(
        query=torch.randn(2, 4, 5, 8), key=torch.randn(2, 4, 6, 8), value=torch.randn(2, 4, 6, 8))


def _attention() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.attention, dict(q=torch.randn(2, 5, 4, 8), k=torch.randn(2, 6, 2, 8),
                                    v=torch.randn(2, 6, 2, 8))


def _varlen_attention() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.attention, dict(q=torch.randn(7, 4, 8), k=torch.randn(7, 2, 8),
                                    v=torch.randn(7, 2, 8), cu_seqlens_q=_i32(0, 3, 7),
                                    cu_seqlens_k=_i32(0, 3, 7))


def _flash() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.flash_attn_func, dict(q=torch.randn(2, 5, 4, 8), k=torch.randn(2, 6, 2, 8),
                                          v=torch.randn(2, 6, 2, 8))


def _varlen() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.flash_attn_varlen_func, dict(
        q=torch.randn(7, 4, 8), k=torch.randn(7, 2, 8), v=torch.randn(7, 2, 8),
        cu_seqlens_q=_i32(0, 3, 7), cu_seqlens_k=_i32(0, 3, 7), max_seqlen_q=4, max_seqlen_k=4)


def _varlen_paged() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.flash_attn_varlen_func, dict(
        q=torch.randn(7, 4, 8), k=torch.randn(4, 4, 2, 8), v=torch.randn(4, 4, 2, 8),
        cu_seqlens_q=_i32(0, 3, 7), cu_seqlens_k=_i32(0, 5, 9), max_seqlen_q=4,
        max_seqlen_k=12, block_table=_i32(0, 1, 2, 3).reshape(2, 2))


def _kvcache() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.flash_attn_with_kvcache, dict(
        q=torch.randn(2, 1, 4, 16), k_cache=torch.randn(2, 10, 2, 16),
        v_cache=torch.randn(2, 10, 2, 16), k=torch.randn(2, 1, 2, 16),
        v=torch.randn(2, 1, 2, 16), cache_seqlens=_i32(3, 5), rotary_cos=torch.rand(10, 4),
        rotary_sin=torch.rand(10, 4), cache_leftpad=_i32(1, 0))


def _kvcache_paged() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.flash_attn_with_kvcache, dict(
        q=torch.randn(2, 1, 4, 16), k_cache=torch.randn(4, 4, 2, 16),
        v_cache=torch.randn(4, 4, 2, 16), cache_seqlens=_i32(3, 5),
        block_table=_i32(0, 1, 2, 3).reshape(2, 2))


def _kvcache_rows() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.flash_attn_with_kvcache, dict(
        q=torch.randn(2, 1, 4, 16), k_cache=torch.randn(3, 10, 2, 16),
        v_cache=torch.randn(3, 10, 2, 16), cache_seqlens=4, cache_batch_idx=_i32(2, 0))


def _merge() -> Tuple[Callable[..., Any], Dict[str, Any]]:
    return salience.merge_attention_states, dict(
        out_a=torch.randn(2, 3, 4, 8), lse_a=torch.randn(2, 4, 3),
        out_b=torch.randn(2, 3, 4, 8), lse_b=torch.randn(2, 4, 3))


# (call, argument, bad values, the name the message must hold).
TABLE: List[Tuple[Callable[[], Any], str, List[Any], str]] = [
    (_sdpa, "is_causal", BOOLS, "is_causal"),
    (_sdpa, "enable_gqa", BOOLS, "enable_gqa"),
    (_sdpa, "scale", REALS, "scale"),
    (_sdpa, "dropout_p", REALS + [None, 1.0, -0.1], "dropout_p"),
    (_sdpa, "attn_mask", [np.zeros((5, 6), bool), "mask", torch.zeros(5, 6, dtype=torch.int8)],
     "attn_mask"),
    (_attention, "causal", [1, "diag", 1.0, "True"], "causal"),
    (_attention, "layout", [1, "nbhd", None], "layout"),
    (_attention, "window_align", [0, "left", None], "window_align"),
    (_attention, "window_left", INT64S, "window_left"),
    (_attention, "window_right", INT64S, "window_right"),
    (_attention, "scale", REALS, "scale"),
    (_attention, "softcap", REALS + [None, -1.0], "softcap"),
    (_attention, "num_threads", [2**40, -1, 1.5, "4", True], "num_threads"),
    (_attention, "dropout_p", REALS + [2.0], "dropout_p"),
    (_attention, "dropout_seed", [1.5, -1, 2**64, "1"], "dropout_seed"),
    (_attention, "dropout_offset", [1.5, -1, 2**64], "dropout_offset"),
    (_attention, "return_lse", BOOLS, "return_lse"),
    (_attention, "reference", BOOLS, "reference"),
    (_attention, "seqlens_q", INDICES + [[], _i32()], "seqlens_q"),
    (_attention, "seqlens_k", INDICES + [[]], "seqlens_k"),
    (_attention, "alibi_slopes", [torch.ones(4, dtype=torch.int64), "x", torch.ones(3)],
     "alibi_slopes"),
    (_attention, "mask", [np.zeros((5, 6), bool), torch.zeros(5, 6, dtype=torch.int8)], "mask"),
    (_attention, "out", [READ_ONLY, torch.empty(2, 5, 4, 8, dtype=torch.float64), 3,
                         torch.empty(2, 5, 4, 4), np.empty((2, 5, 4, 8), np.float32)], "out"),
    (_varlen_attention, "cu_seqlens_q", INDICES + [[], [0], _i32()], "cu_seqlens_q"),
    (_flash, "causal", BOOLS, "causal"),
    (_flash, "deterministic", BOOLS, "deterministic"),
    (_flash, "return_attn_probs", BOOLS, "return_attn_probs"),
    (_flash, "softmax_scale", REALS, "softmax_scale"),
    (_flash, "softcap", REALS, "softcap"),
    (_flash, "window_size", [(1.5, 0), (2**63, -1), (-1, -(2**63) - 1), (0,), "ab", None, 3],
     "window_size"),
    (_flash, "alibi_slopes", [np.ones(4, np.float32), torch.ones(4, dtype=torch.int64)],
     "alibi_slopes"),
    (_varlen, "cu_seqlens_q", INDICES + [[], [0], torch.zeros(0, dtype=torch.int32)],
     "cu_seqlens_q"),
    (_varlen, "cu_seqlens_k", INDICES + [[], torch.zeros(0, dtype=torch.int32)], "cu_seqlens_k"),
    (_varlen, "max_seqlen_q", [None, 1.5, 2**40, -1, "4", 2], "max_seqlen_q"),
    (_varlen, "max_seqlen_k", [None, 4.0, 2**63], "max_seqlen_k"),
    (_varlen, "dropout_p", REALS, "dropout_p"),
    (_varlen_paged, "block_table", TABLES + [_i32(0, 1), _i32(0, 9, 2, 3).reshape(2, 2),
                                              _i32(0, 1, 2, 3, 0, 1).reshape(3, 2)],
     "block_table"),
    (_varlen_paged, "cu_seqlens_k", [_i32(0, 5, 15), _i32(1, 5, 9), _i32(0, 5, 3)],
     "cu_seqlens_k"),
    (_varlen_paged, "dropout_p", [0.1], "dropout_p"),
    (_kvcache, "cache_seqlens", INDICES + [2**40, -1, 1.5, "3", _i32(3), _i32(3, 11)],
     "cache_seqlens"),
    (_kvcache, "cache_leftpad", INDICES + [_i32(4, 0), _i32(-1, 0), _i32(0)], "cache_leftpad"),
    (_kvcache, "causal", BOOLS, "causal"),
    (_kvcache, "window_size", [(1.5, 0), (2**63, -1), None], "window_size"),
    (_kvcache, "softcap", REALS, "softcap"),
    (_kvcache, "softmax_scale", REALS, "softmax_scale"),
    (_kvcache, "rotary_interleaved", BOOLS, "rotary_interleaved"),
    (_kvcache, "num_splits", [1.5, 2**40, "2", None], "num_splits"),
    (_kvcache, "return_softmax_lse", BOOLS, "return_softmax_lse"),
    (_kvcache, "rotary_cos", [torch.rand(10, 12), torch.rand(4, 4), torch.rand(10), None,
                              np.random.rand(10, 4).astype(np.float32),
                              torch.ones(10, 4, dtype=torch.int32)], "rotary_"),
    (_kvcache, "rotary_sin", [torch.rand(10, 3), None], "rotary_"),
    (_kvcache, "k", [torch.ones(2, 1, 2, 16, dtype=torch.int32), torch.ones(2, 1, 2, 16).double(),
                     torch.ones(2, 2, 16), [1.0]], "k"),
    (_kvcache, "k_cache", [np.zeros((2, 10, 2, 16), np.float32), torch.zeros(2, 10, 2, 16).double()],
     "k_cache"),
    (_kvcache_paged, "block_table", TABLES + [_i32(0, 1, 2, 7).reshape(2, 2),
                                              _i32(0, 1, -1, 3).reshape(2, 2), _i32(0, 1)],
     "block_table"),
    (_kvcache_paged, "cache_batch_idx", [_i32(0, 1)], "cache_batch_idx"),
    (_kvcache_rows, "cache_batch_idx", INDICES + [_i32(0, 3), _i32(-1, 0), _i32(0)],
     "cache_batch_idx"),
    (_merge, "out_a", [torch.randn(2, 3, 4, 8).double(), [1.0], np.zeros((2, 3, 4, 8), np.float32)],
     "out_a"),
    (_merge, "lse_b", [torch.randn(2, 4, 3).bfloat16(), torch.randn(2, 4, 2)], "lse_b"),
]


def _cases() -> List[Any]:
    cases = []
    for make, argument, values, name in TABLE:
        for index, value in enumerate(values):
            cases.append(pytest.param(make, argument, value, name,
                                      id=f"{make.__name__[1:]}-{argument}-{index}"))
    return cases


@pytest.mark.parametrize("make, argument, value, name", _cases())
def test_bad_argument_raises_naming_it(make: Callable[[], Any], argument: str, value: Any,
                                       name: str) -> None:
    function, arguments = make()
    arguments[argument] = value
    with pytest.raises((TypeError, ValueError)) as raised:
        function(**arguments)
    message = str(raised.value)
    assert name in message, message
    assert "incompatible function arguments" not in message, message


@pytest.mark.parametrize("make", [_sdpa, _attention, _varlen_attention, _flash, _varlen,
                                  _varlen_paged, _kvcache, _kvcache_paged, _kvcache_rows, _merge])
def test_the_valid_calls_of_the_table_run(make: Callable[[], Any]) -> None:
    function, arguments = make()
    function(**arguments)


def test_set_num_threads_checks_its_argument() -> None:
    for bad in (2**40, -1, 1.5, "2", True):
        with pytest.raises((TypeError, ValueError), match="num_threads"):
            salience.set_num_threads(bad)
    salience.set_num_threads(np.int64(0))
    assert salience.get_num_threads() >= 1


def test_integer_like_values_are_accepted() -> None:
    """NumPy integers and one-element integer tensors where ints go (flash-attn
    code often passes lengths.max() as a tensor), NumPy floats as reals."""
    q, k, v = torch.randn(7, 4, 8), torch.randn(7, 2, 8), torch.randn(7, 2, 8)
    cu = _i32(0, 3, 7)
    expected = salience.flash_attn_varlen_func(q, k, v, cu, cu, 4, 4, softmax_scale=0.5)
    got = salience.flash_attn_varlen_func(q, k, v, cu, cu, cu.diff().max(), np.int64(4),
                                          softmax_scale=np.float32(0.5),
                                          window_size=(np.int32(-1), torch.tensor(-1)))
    assert torch.equal(got, expected)


def test_empty_cu_seqlens_is_no_dense_attention() -> None:
    """The issue's case: empty offsets used to mean "no varlen batch", so the
    packed sequences attended to each other."""
    q, k = torch.randn(6, 2, 8), torch.randn(7, 2, 8)
    e = torch.zeros(0, dtype=torch.int32)
    with pytest.raises(ValueError, match="cu_seqlens_q: expected at least 2 entries"):
        salience.flash_attn_varlen_func(q, k, k, e, e, 6, 7)
    with pytest.raises(ValueError, match="cu_seqlens_q: expected at least 2"):
        salience.attention(q, k, k, cu_seqlens_q=e, cu_seqlens_k=e)
    # The module itself refuses given-but-empty offsets and lengths.
    out = torch.empty(1, 6, 2, 8)
    with pytest.raises(ValueError, match="cu_seqlens_q: expected num_seqs"):
        _salience.forward(q[None], k[None], k[None], out, cu_seqlens_q=e.numpy(),
                          cu_seqlens_k=e.numpy())
    with pytest.raises(ValueError, match="seqlens_k: expected 1 lengths"):
        _salience.forward(q[None], k[None], k[None], out, seqlens_k=e.numpy())


@pytest.mark.parametrize("bad", [torch.tensor([[2**32 + 2]]), torch.tensor([[2**63 - 1]]),
                                 np.array([[2**63]], dtype=np.uint64)])
def test_block_table_is_not_truncated(bad: Any) -> None:
    """The issue's case: 2**32 + 2 read page 2 and uint64 2**63 page 0."""
    q, cache = torch.randn(1, 1, 1, 8), torch.randn(4, 8, 1, 8)
    if isinstance(bad, np.ndarray):  # one kind per call: all NumPy
        q, cache = q.numpy(), cache.numpy()
    with pytest.raises(ValueError, match="block_table: expected values in int32's range"):
        salience.flash_attn_with_kvcache(q, cache, cache, cache_seqlens=3, block_table=bad)


def test_cache_seqlens_int_out_of_range() -> None:
    cache = torch.randn(1, 8, 1, 8)
    with pytest.raises(ValueError, match=r"cache_seqlens: expected an integer in \[0, "):
        salience.flash_attn_with_kvcache(torch.randn(1, 1, 1, 8), cache, cache,
                                         cache_seqlens=2**40)


# --- one kind of array per call ----------------------------------------------

MIXED = {
    "sdpa mask": lambda: salience.scaled_dot_product_attention(
        torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8),
        attn_mask=np.ones((4, 4), bool)),
    "attention out": lambda: salience.attention(
        torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8),
        out=np.empty((1, 4, 2, 8), np.float32)),
    "attention numpy with torch mask": lambda: salience.attention(
        *(np.zeros((1, 4, 2, 8), np.float32),) * 3, mask=torch.ones(4, 4, dtype=torch.bool)),
    "flash alibi": lambda: salience.flash_attn_func(
        *(torch.randn(1, 4, 2, 8),) * 3, alibi_slopes=np.ones(2, np.float32)),
    "varlen offsets": lambda: salience.flash_attn_varlen_func(
        *(torch.randn(7, 2, 8),) * 3, np.array([0, 7], np.int32), _i32(0, 7), 7, 7),
    "kvcache seqlens": lambda: salience.flash_attn_with_kvcache(
        torch.randn(1, 1, 2, 8), *(torch.randn(1, 6, 2, 8),) * 2,
        cache_seqlens=np.array([3], np.int32)),
    "kvcache cache": lambda: salience.flash_attn_with_kvcache(
        torch.randn(1, 1, 2, 8), np.zeros((1, 6, 2, 8), np.float32),
        np.zeros((1, 6, 2, 8), np.float32), cache_seqlens=3),
    "merge": lambda: salience.merge_attention_states(
        torch.randn(1, 2, 2, 8), np.zeros((1, 2, 2), np.float32), torch.randn(1, 2, 2, 8),
        torch.zeros(1, 2, 2)),
}


@pytest.mark.parametrize("case", sorted(MIXED))
def test_mixing_torch_and_numpy_arrays_raises(case: str) -> None:
    """docs/python.md: the array arguments of a call (tensors, masks, out,
    caches, index and slope arrays) are all torch tensors or all NumPy
    arrays; index arguments may also be Python lists or ints."""
    with pytest.raises(TypeError, match="expected all torch tensors or all NumPy arrays"):
        MIXED[case]()


def test_index_arguments_may_be_python_sequences() -> None:
    q = torch.randn(7, 2, 8)
    cu = _i32(0, 3, 7)
    expected = salience.flash_attn_varlen_func(q, q, q, cu, cu, 4, 4)
    assert torch.equal(salience.flash_attn_varlen_func(q, q, q, [0, 3, 7], (0, 3, 7), 4, 4),
                       expected)
    qn = q.numpy()
    assert np.array_equal(salience.flash_attn_varlen_func(qn, qn, qn, [0, 3, 7], [0, 3, 7], 4, 4),
                          expected.numpy())
