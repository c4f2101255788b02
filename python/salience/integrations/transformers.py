"""salience as an attention implementation of Hugging Face transformers.

    import salience.integrations.transformers   # registers "salience"
    model = AutoModel.from_pretrained(path, attn_implementation="salience")

The import registers `attention_forward` in transformers' AttentionInterface
and `mask_interface` in its AttentionMaskInterface under the name
"salience", so every model whose attention goes through those interfaces
(BERT and MiniLM, Llama, Qwen, Mistral, Gemma, gpt-oss, ViT, Whisper, ...)
runs its attention on salience's kernels, in inference and in training
(loss.backward() runs salience's backward). sentence-transformers takes it
through `model_kwargs={"attn_implementation": "salience"}`.

What reaches the kernel, by what the model asks for:
- causal, sliding-window (Mistral, Gemma 2/3, Qwen 2/3, gpt-oss) and
  bidirectional masks arrive as structure (salience.integrations._masks):
  the kernel's causal and window options, which skip hidden key blocks,
  never a q x k tensor;
- a tokenizer's padding mask becomes each sequence's valid key range:
  right padding the kernel's seqlens_k, left padding (batched generation) a
  view of the keys that starts at the first real token; a padding mask with
  holes a [batch, 1, 1, kv] key mask;
- a decode step of model.generate (one new token against the KV cache) is a
  call of decode shape, which salience runs on its decode kernel;
- GQA/MQA heads, the softcap (Gemma 2), per-head attention sinks (gpt-oss's
  s_aux), the scaling and training-time dropout are the kernel's options;
- any other mask (packed sequences, image-token overlays, chunked
  attention, a 4-D mask the caller built, T5-style position biases) passes
  through as a bool or float mask tensor, with sdpa's semantics.

Results match attn_implementation="sdpa" to float rounding; dropout draws a
mask of salience's own (docs/python.md), and output_attentions returns None
for the weights, as sdpa does.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

import salience
from salience._autograd import dropout_options
from salience.integrations._masks import AttentionMask, band_options, mask_interface
from salience.integrations._sinks import attention_with_sinks

__all__ = ["NAME", "AttentionMask", "attention_forward", "mask_interface", "register"]

NAME = "salience"

_log = logging.getLogger(__name__)
_warned_output_attentions = False

# One kernel call of a model's attention: the batch rows [b0, b1) against
# keys [k0, k1), with its own options (band, seqlens_k) and mask tensor.
_Call = Tuple[int, int, int, int, Dict[str, Any], Optional[torch.Tensor]]


def _dense_call(batch: int, kv_length: int, mask: torch.Tensor) -> List[_Call]:
    return [(0, batch, 0, kv_length, {}, mask)]


def _with_bias(position_bias: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """A float mask of the position bias, -inf where `mask` (bool, or float
    and added) hides a key."""
    bias = position_bias.to(torch.float32)
    if mask is None:
        return bias
    if mask.dtype == torch.bool:
        return bias.masked_fill(~mask, float("-inf"))
    return bias + mask.to(torch.float32)


def _calls_for_structure(mask: AttentionMask, q_length: int, kv_length: int) -> List[_Call]:
    """Kernel calls for a band with padding (see AttentionMask); falls back to
    the materialized mask where the kernel's options cannot say the band."""
    batch = mask.batch_size
    band = dict(offset=mask.offset, causal=mask.causal, window=mask.window)
    if mask.key_begin is None or mask.key_end is None:  # no padding, or with holes
        options = band_options(q_length, (kv_length,), **band)
        if options is None:
            return _dense_call(batch, kv_length, mask.to_dense())
        key_mask = None if mask.key_valid is None else mask.key_valid[:, None, None, :]
        return [(0, batch, 0, kv_length, options, key_mask)]
    begin, end = mask.key_begin, mask.key_end
    if (begin == begin[0]).all():
        # One call: keys from the common first valid one; the ends as seqlens_k.
        k0, k1 = int(begin[0]), max(int(end.max()), int(begin[0]) + 1)
        lengths = np.maximum(end - k0, 0)
        options = band_options(q_length, lengths, **{**band, "offset": mask.offset - k0})
        if options is None:
            return _dense_call(batch, kv_length, mask.to_dense())
        if not (lengths == k1 - k0).all():
            options["seqlens_k"] = lengths.tolist()  # a list: any array kind
        return [(0, batch, k0, k1, options, None)]
    # Sequences starting at different keys (left padding): one call each, on
    # a view of its keys.
    calls: List[_Call] = []
    for b in range(batch):
        k0, k1 = int(begin[b]), int(end[b])
        if k1 <= k0:  # no real token: every row sees no key and gives 0
            calls.append((b, b + 1, 0, kv_length, {"seqlens_k": [0]}, None))
            continue
        options = band_options(q_length, (k1 - k0,), **{**band, "offset": mask.offset - k0})
        if options is None:
            return _dense_call(batch, kv_length, mask.to_dense())
        calls.append((b, b + 1, k0, k1, options, None))
    return calls


def _plan(module: Any, attention_mask: Any, is_causal: Optional[bool],
          position_bias: Optional[torch.Tensor], batch: int, q_length: int,
          kv_length: int) -> List[_Call]:
    """The kernel calls that compute one attention of a model."""
    if isinstance(attention_mask, AttentionMask):
        if (attention_mask.q_length, attention_mask.kv_length) != (q_length, kv_length):
            raise ValueError(
                f"attention_mask: built for {attention_mask.q_length} queries and "
                f"{attention_mask.kv_length} keys, the call has {q_length} and {kv_length}")
        if position_bias is not None:
            return _dense_call(batch, kv_length,
                               _with_bias(position_bias, attention_mask.to_dense()))
        if attention_mask.dense is not None:
            return _dense_call(batch, kv_length, attention_mask.dense)
        return _calls_for_structure(attention_mask, q_length, kv_length)
    if attention_mask is not None:  # a tensor the model or the caller built: sdpa's semantics
        if not isinstance(attention_mask, torch.Tensor):
            raise TypeError(f"attention_mask: expected a torch.Tensor or an AttentionMask, "
                            f"got {type(attention_mask).__name__}")
        mask = attention_mask
        if position_bias is not None:
            mask = _with_bias(position_bias, mask)
        elif mask.dtype not in (torch.bool, torch.float32):
            mask = mask.to(torch.float32)
        mask = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
        return _dense_call(batch, kv_length, mask)
    # No mask: sdpa's rule, causal (top-left) for a causal module unless one query.
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal) and q_length > 1
    if position_bias is not None:
        hidden = None
        if causal:
            hidden = torch.arange(kv_length)[None, :] <= torch.arange(q_length)[:, None]
        return _dense_call(batch, kv_length, _with_bias(position_bias, hidden))
    return [(0, batch, 0, kv_length, {"causal": "top_left"} if causal else {}, None)]


def attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                      value: torch.Tensor, attention_mask: Any, dropout: float = 0.0,
                      scaling: Optional[float] = None, is_causal: Optional[bool] = None,
                      softcap: Optional[float] = None, s_aux: Optional[torch.Tensor] = None,
                      position_bias: Optional[torch.Tensor] = None,
                      **kwargs: Any) -> Tuple[torch.Tensor, None]:
    """transformers' attention function for "salience": query [batch,
    heads_q, q_len, head_dim], key and value [batch, heads_kv, kv_len, dim]
    (heads_kv dividing heads_q), the mask from `mask_interface` (or a
    tensor, or None); returns ([batch, q_len, heads_q, head_dim_v], None)."""
    global _warned_output_attentions
    if kwargs.get("output_attentions") and not _warned_output_attentions:
        _warned_output_attentions = True
        _log.warning("attn_implementation='salience' does not return attention weights "
                     "(output_attentions=True gives None, as 'sdpa' does)")
    batch, heads_q, q_length, _ = query.shape
    kv_length, head_dim_v = key.shape[2], value.shape[3]
    common: Dict[str, Any] = {"scale": scaling, "softcap": float(softcap or 0.0)}
    if dropout > 0.0:
        common.update(dropout_options(float(dropout), query))
    calls = _plan(module, attention_mask, is_causal, position_bias, batch, q_length, kv_length)

    graph = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (query, key, value, s_aux))
    # Without autograd, every call writes its rows of the output in place, in
    # the [batch, q_len, heads, dim] order the model reads; with it, the
    # pieces are joined so that each keeps its gradient.
    out = None if graph else torch.empty(batch, q_length, heads_q, head_dim_v,
                                         dtype=query.dtype)
    pieces = []
    for b0, b1, k0, k1, options, mask in calls:
        q, k, v, rows = query, key, value, out
        if (b0, b1, k0, k1) != (0, batch, 0, kv_length):  # views of a part
            q, k, v = query[b0:b1], key[b0:b1, :, k0:k1], value[b0:b1, :, k0:k1]
            rows = None if out is None else out[b0:b1]
            if mask is not None and mask.shape[0] != 1:
                mask = mask[b0:b1]
        rows = None if rows is None else rows.transpose(1, 2)
        if "dropout_offset" in common and b0 > 0:  # a stream of its own per call
            options = {**options, "dropout_offset": (common["dropout_offset"] + b0) % 2**64}
        if s_aux is not None:
            piece = attention_with_sinks(q, k, v, s_aux, mask=mask, **{**common, **options})
            if rows is not None:
                rows.copy_(piece)
        else:
            piece = salience.attention(q, k, v, layout="bhnd", mask=mask, out=rows,
                                       **{**common, **options})
        pieces.append(piece)
    if out is not None:
        return out, None
    whole = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=0)
    return whole.transpose(1, 2).contiguous(), None


def register() -> None:
    """Registers "salience" with transformers (done on import; idempotent)."""
    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, mask_interface)


register()
