"""transformers' masks as structure (salience.integrations._masks): every
standard mask function, cache offset and padding pattern gives the mask
transformers' sdpa_mask materializes, and the attention computed from the
structure is torch SDPA's with that mask."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import masking_utils  # noqa: E402

from salience.integrations import _masks  # noqa: E402
from salience.integrations.transformers import attention_forward  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

FUNCTIONS = {
    "causal": (masking_utils.causal_mask_function, None),
    "bidirectional": (masking_utils.bidirectional_mask_function, None),
    "sliding": (masking_utils.sliding_window_causal_mask_function(3), 3),
    "bidirectional_sliding": (masking_utils.sliding_window_bidirectional_mask_function(2), 2),
}
# (q_length, kv_length, q_offset, kv_offset): a prompt, decode steps against a
# cache, a chunk of several tokens, a sliding cache that dropped its start.
SIZES = [(5, 5, 0, 0), (1, 9, 8, 0), (3, 9, 6, 0), (2, 6, 9, 5), (1, 4, 20, 17), (4, 8, 0, 0)]
PADDINGS = ["none", "right", "left", "both_ends", "holes", "all_padding"]


class _Module:
    is_causal = True


def _padding(kind: str, batch: int, length: int) -> torch.Tensor:
    mask = torch.ones(batch, length, dtype=torch.bool)
    if kind == "right":
        mask[1, length - 3:] = False
    elif kind == "left":
        mask[1, :2] = False
        mask[2, :4] = False
    elif kind == "both_ends":
        mask[1, :2] = False
        mask[1, -1] = False
    elif kind == "holes":
        mask[1, 2] = False
    elif kind == "all_padding":
        mask[1] = False
    return mask


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "q{}k{}+{}-{}".format(*s))
@pytest.mark.parametrize("padding", PADDINGS)
def test_structure_is_sdpa_mask(function: str, size: tuple, padding: str) -> None:
    mask_function, window = FUNCTIONS[function]
    q_length, kv_length, q_offset, kv_offset = size
    batch = 3
    padding_mask = None if padding == "none" else _padding(padding, batch, kv_offset + kv_length)
    arguments = dict(batch_size=batch, q_length=q_length, kv_length=kv_length,
                     q_offset=q_offset, kv_offset=kv_offset, mask_function=mask_function,
                     attention_mask=padding_mask, local_size=window)
    expected = masking_utils.sdpa_mask(**arguments, allow_is_causal_skip=False)
    mask = _masks.mask_interface(**arguments)
    assert mask.dense is None, "a standard mask must arrive as structure"
    assert torch.equal(mask.to_dense(), expected.expand(batch, 1, q_length, kv_length))

    q = torch.randn(batch, 4, q_length, 8)
    k, v = torch.randn(batch, 2, kv_length, 8), torch.randn(batch, 2, kv_length, 8)
    out, weights = attention_forward(_Module(), q, k, v, mask, scaling=0.3)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=expected, scale=0.3,
                                               enable_gqa=True)
    assert weights is None
    assert out.shape == (batch, q_length, 4, 8) and out.is_contiguous()
    torch.testing.assert_close(out, reference.transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_right_padding_is_one_call_with_lengths() -> None:
    mask = _masks.mask_interface(batch_size=3, q_length=6, kv_length=6,
                                 mask_function=masking_utils.bidirectional_mask_function,
                                 attention_mask=_padding("right", 3, 6))
    assert mask.key_begin.tolist() == [0, 0, 0] and mask.key_end.tolist() == [6, 3, 6]
    assert mask.key_valid is None


def test_other_masks_pass_through_materialized() -> None:
    def even_keys(batch_idx, head_idx, q_idx, kv_idx):  # type: ignore[no-untyped-def]
        return kv_idx % 2 == 0

    function = masking_utils.and_masks(masking_utils.causal_mask_function, even_keys)
    arguments = dict(batch_size=2, q_length=5, kv_length=5, mask_function=function,
                     use_vmap=True)
    mask = _masks.mask_interface(**arguments)
    expected = masking_utils.sdpa_mask(**arguments, allow_is_causal_skip=False)
    assert mask.dense is not None and torch.equal(mask.dense, expected)
    q, k, v = (torch.randn(2, 2, 5, 8) for _ in range(3))
    out, _ = attention_forward(_Module(), q, k, v, mask)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=expected)
    torch.testing.assert_close(out, reference.transpose(1, 2), atol=1e-5, rtol=1e-5)


def test_band_options_use_the_kernels_masks() -> None:
    # A prompt: top-left causal; a decode step: bottom-right, the decode
    # kernel's alignment; a sliding layer adds its left bound.
    assert _masks.band_options(5, (5,), 0, True, None) == {"causal": "top_left"}
    assert _masks.band_options(1, (9, 9), 8, True, None) == {"causal": "bottom_right"}
    assert _masks.band_options(1, (9,), 8, True, 4) == {
        "causal": "bottom_right", "window_align": "bottom_right", "window_left": 3}
    # A static cache (keys past the end are padding): top-left with a band.
    assert _masks.band_options(1, (5, 7), 8, True, None) == {
        "window_align": "top_left", "window_right": 8}
    # Beyond what the options say (a causal diagonal above the first key
    # row, not aligned with the lengths): None, so the mask is materialized.
    assert _masks.band_options(4, (9,), -2, True, None) is None


@pytest.mark.parametrize("sizes", list(itertools.product([1, 4], [7, 12])))
def test_tensor_masks_keep_sdpa_semantics(sizes: tuple) -> None:
    q_length, kv_length = sizes
    q = torch.randn(2, 4, q_length, 16)
    k, v = torch.randn(2, 4, kv_length, 16), torch.randn(2, 4, kv_length, 16)
    float_mask = torch.randn(2, 1, q_length, kv_length)
    bool_mask = torch.rand(2, 1, q_length, kv_length) > 0.3
    for mask in (float_mask, bool_mask, float_mask.to(torch.bfloat16)):
        out, _ = attention_forward(_Module(), q, k, v, mask)
        reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(torch.float32)
                                                   if mask.dtype == torch.bfloat16 else mask)
        torch.testing.assert_close(out, reference.transpose(1, 2), atol=1e-5, rtol=1e-5)
    # No mask: causal top-left for a causal module with several queries.
    out, _ = attention_forward(_Module(), q, k, v, None)
    reference = F.scaled_dot_product_attention(q, k, v, is_causal=q_length > 1)
    torch.testing.assert_close(out, reference.transpose(1, 2), atol=1e-5, rtol=1e-5)
