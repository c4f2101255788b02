#!/usr/bin/env python3
"""salience against its peers on the CPU, in one process, on the same tensors.

  bench/peers.py [--quick] [--max-seq N] [--write] [--json FILE]
  bench/peers.py --backward | --decode   (the backward alone; decode)

Times the attention forward (fp32, or bf16 with --dtype bfloat16) of
salience.scaled_dot_product_attention,
torch's scaled_dot_product_attention (the backend torch picks on the CPU,
and its math backend through torch.nn.attention.sdpa_kernel) and ONNX
Runtime's standard Attention operator (opset 23) where onnxruntime installs,
for B=1, H=16, D in {64, 128}, causal and not, N = 256..16384 (--max-seq
caps it: one fp32 forward at N=16384, D=128 is 2.2 TFLOP). Every call runs
once to warm up, then repeatedly (at least --reps times and --min-time
seconds); the table gives the median. All peers get the same thread count.
On a machine shared with other work, a measurement during which other
processes kept more than --max-foreign cores busy (read from /proc/stat) is
repeated once the machine is quiet, and marked with * if it never was.

Prints a markdown table (machine, date and command in its header); --write
puts it into BENCHMARKS.md between the markers <!-- peers:begin --> and
<!-- peers:end --> (appended at the end of the file if missing) and draws
docs/img/peers.png (time and GFLOP/s against N, log scales). --json saves the
raw timings; --from-json renders a saved run again without timing anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import shlex
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import salience

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
BATCH, HEADS = 1, 16
PEERS = ["salience", "torch SDPA", "torch math", "ONNX Runtime"]
# --dtype: the peers' inputs and outputs; fp32 accumulation in salience.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Agreement between peers: bf16 outputs differ by a few output roundings
# (2^-8 each) where the peers round P, scores or sums differently.
AGREE = {"float32": dict(rtol=1e-3, atol=1e-4), "bfloat16": dict(rtol=3e-2, atol=3e-2)}

Runner = Callable[[], Any]


def cpu_name() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def simd_flags() -> str:
    try:
        flags = next(line for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return ""
    return ", ".join(f for f in ("avx512f", "avx2", "fma") if f in flags)


def flops(seq: int, head_dim: int, causal: bool) -> float:
    """QK^T and PV, 2 flops per multiply-add each, over the visible pairs."""
    pairs = seq * (seq + 1) / 2 if causal else seq * seq
    return 4.0 * BATCH * HEADS * head_dim * pairs


def onnx_runner(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool,
                threads: int) -> Optional[Runner]:
    """ONNX Runtime's Attention (ai.onnx opset 23) on [B, H, N, D] inputs,
    or None if onnxruntime/onnx are not installed."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
        from onnx import TensorProto, helper
    except ImportError:
        return None
    shape = list(q.shape)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "QKV"]
    output = helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)
    node = helper.make_node("Attention", ["Q", "K", "V"], ["Y"], is_causal=int(causal))
    model = helper.make_model(helper.make_graph([node], "attention", inputs, [output]),
                              opset_imports=[helper.make_opsetid("", 23)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feeds = {"Q": q, "K": k, "V": v}
    return lambda: session.run(None, feeds)[0]


def busy_cpu_seconds() -> float:
    """CPU time all processes have used, from /proc/stat (0 where absent)."""
    try:
        fields = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def foreign_cores(busy0: float, own0: float, wall0: float) -> float:
    """Cores that other processes kept busy since (busy0, own0, wall0)."""
    wall = time.perf_counter() - wall0
    other = (busy_cpu_seconds() - busy0) - (time.process_time() - own0)
    return max(0.0, other / wall) if wall > 0 else 0.0


def wait_for_quiet(limit: float, seconds: float) -> bool:
    """Waits, up to `seconds`, for a second in which other processes use
    less than `limit` cores; True if one came."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        marks = busy_cpu_seconds(), time.process_time(), time.perf_counter()
        time.sleep(1.0)
        if foreign_cores(*marks) < limit:
            return True
    return False


def median_seconds(run: Runner, args: argparse.Namespace) -> Dict[str, Any]:
    """The median of timed calls after a warm-up. Other processes on the
    same cores make every call wait for scheduler ticks, so a measurement
    during which they used more than --max-foreign cores is repeated after
    the machine goes quiet (up to --retries times), and flagged if it never
    was clean."""
    result = run()  # warm-up
    for attempt in range(args.retries + 1):
        times: List[float] = []
        marks = busy_cpu_seconds(), time.process_time(), time.perf_counter()
        while len(times) < args.reps or (time.perf_counter() - marks[2] < args.min_time
                                         and len(times) < 50):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        foreign = foreign_cores(*marks)
        if foreign <= args.max_foreign or attempt == args.retries:
            break
        print(f"    other processes used {foreign:.2f} cores: waiting to measure again",
              file=sys.stderr, flush=True)
        wait_for_quiet(args.max_foreign / 2, args.quiet_wait)
    return {"seconds": statistics.median(times), "runs": len(times), "output": result,
            "foreign": foreign}


def bench_shape(seq: int, head_dim: int, causal: bool, args: argparse.Namespace,
                skipped: Dict[str, str], last: Dict[str, float]) -> Dict[str, Any]:
    """One shape: every peer on the same tensors; None where skipped."""
    gen = torch.Generator().manual_seed(seq * 1000 + head_dim)
    dtype = DTYPES[args.dtype]
    q, k, v = (torch.randn(BATCH, HEADS, seq, head_dim, generator=gen).to(dtype) for _ in range(3))
    runners: Dict[str, Optional[Runner]] = {
        "salience": lambda: salience.scaled_dot_product_attention(q, k, v, is_causal=causal),
        "torch SDPA": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
    }

    def math_backend() -> Any:
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    score_gib = BATCH * HEADS * seq * seq * 4 / 2**30
    runners["torch math"] = math_backend if score_gib <= args.math_max_gib else None
    if runners["torch math"] is None:
        skipped.setdefault("torch math", f"skipped where its N x N scores exceed "
                                         f"{args.math_max_gib:g} GiB")
    ort_run = None
    if args.dtype != "float32":
        skipped.setdefault("ONNX Runtime", f"not run for {args.dtype} (NumPy has no bfloat16)")
    elif not args.no_onnx:
        ort_run = onnx_runner(q.numpy(), k.numpy(), v.numpy(), causal, args.threads)
    if ort_run is None:
        skipped.setdefault("ONNX Runtime", "not run: onnxruntime and onnx are not installed"
                           if not args.no_onnx else "not run (--no-onnx)")
    runners["ONNX Runtime"] = ort_run

    row: Dict[str, Any] = {"seq": seq, "head_dim": head_dim, "causal": causal,
                           "gflop": flops(seq, head_dim, causal) / 1e9, "ms": {}, "runs": {}}
    reference = None
    for peer in PEERS:
        run = runners.get(peer)
        key = f"{peer}/{head_dim}/{causal}"
        # Quadratic cost: skip a peer whose last call projects past the limit.
        if run is not None and key in last:
            projected = last[key] * (seq / last[key + "/seq"]) ** 2
            if projected > args.max_call_seconds:
                skipped.setdefault(peer, f"stopped where one call would take over "
                                         f"{args.max_call_seconds:g} s")
                run = None
        if run is None:
            row["ms"][peer] = None
            continue
        timed = median_seconds(run, args)
        last[key], last[key + "/seq"] = timed["seconds"], seq
        output = torch.as_tensor(timed["output"])
        if reference is None:
            reference = output
        elif not torch.allclose(output.float(), reference.float(), **AGREE[args.dtype]):
            raise SystemExit(f"{peer} disagrees with salience at N={seq}, D={head_dim}, causal={causal}")
        row["ms"][peer] = timed["seconds"] * 1e3
        row["runs"][peer] = timed["runs"]
        row.setdefault("foreign", {})[peer] = round(timed["foreign"], 2)
    return row


def run_all(args: argparse.Namespace) -> Dict[str, Any]:
    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    salience.set_num_threads(args.threads)
    seqs = [n for n in (256, 512, 1024, 2048, 4096, 8192, 16384) if args.min_seq <= n <= args.max_seq]
    skipped: Dict[str, str] = {}
    last: Dict[str, float] = {}
    rows = []
    for head_dim in args.head_dims:
        for causal in (False, True):
            for seq in seqs:
                row = bench_shape(seq, head_dim, causal, args, skipped, last)
                rows.append(row)
                print(f"  D={head_dim} causal={causal!s:5} N={seq:5}: " + ", ".join(
                    f"{p} {row['ms'][p]:.1f} ms" for p in PEERS if row["ms"][p] is not None),
                    file=sys.stderr, flush=True)
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "cpu": cpu_name(), "simd": simd_flags(), "threads": args.threads,
        "date": datetime.date.today().isoformat(),
        "load": [round(x, 2) for x in load_before],
        "command": "python bench/peers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "versions": {"salience": salience.__version__, "torch": torch.__version__,
                     "onnxruntime": ort_version, "python": platform.python_version()},
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "max_foreign": args.max_foreign, "retries": args.retries,
        "skipped": skipped, "rows": rows, "dtype": args.dtype,
    }


def speedup(row: Dict[str, Any], peer: str) -> Optional[float]:
    ours, theirs = row["ms"]["salience"], row["ms"][peer]
    return None if ours is None or theirs is None else theirs / ours


FORWARD_NAMES = {"float32": "fp32 forward", "bfloat16": "bf16 forward, fp32 accumulation"}


def markdown(result: Dict[str, Any]) -> str:
    v = result["versions"]
    lines = [
        f"### salience against its peers ({FORWARD_NAMES[result.get('dtype', 'float32')]}, "
        "B=1, H=16)",
        "",
        f"{result['cpu']} ({result['simd']}), {result['threads']} threads for every peer; "
        f"{result['date']}; salience {v['salience']}, torch {v['torch']}"
        + (f", onnxruntime {v['onnxruntime']}" if v["onnxruntime"] else "")
        + f", Python {v['python']}"
        + (f"; load average {result['load'][0]:.2f} before the run, "
           f"{result['load_after'][0]:.2f} after" if "load_after" in result else "")
        + f". Command: `{result['command']}`.",
        "",
        "Milliseconds per call, the median after a warm-up; **x** is the peer's time over "
        "salience's (above 1: salience is faster). GFLOP/s counts 4·H·N²·D for QKᵀ and PV "
        "(causal: the visible half). The same torch tensors ([B, H, N, D]) go to every peer; "
        "ONNX Runtime (its standard Attention operator) reads them as NumPy arrays.",
        "",
        "| D | causal | N | salience ms | GFLOP/s | torch SDPA ms | x | torch math ms | x | ONNX Runtime ms | x |",
        "| --: | :-: | --: | --: | --: | --: | --: | --: | --: | --: | --: |",
    ]

    limit = result.get("max_foreign", 0.2)
    flagged = 0

    def cell(value: Optional[float], fmt: str, row: Dict[str, Any], *peers: str) -> str:
        nonlocal flagged
        if value is None:
            return "—"
        if any(row.get("foreign", {}).get(peer, 0.0) > limit for peer in peers):
            flagged += 1
            return format(value, fmt) + "*"
        return format(value, fmt)

    for row in result["rows"]:
        ours = row["ms"]["salience"]
        gflops = row["gflop"] / (ours / 1e3)
        cells = [str(row["head_dim"]), "yes" if row["causal"] else "no", str(row["seq"]),
                 cell(ours, ".2f", row, "salience"), cell(gflops, ".1f", row, "salience")]
        for peer in PEERS[1:]:
            cells += [cell(row["ms"][peer], ".2f", row, peer),
                      cell(speedup(row, peer), ".2f", row, peer, "salience")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if flagged:
        lines.append(f"- \\*: other processes kept more than {limit:g} cores busy during "
                     f"this measurement, even after {result.get('retries', 0)} repeats; "
                     f"treat it as an upper bound.")
    for peer, why in result["skipped"].items():
        lines.append(f"- {peer}: {why} (—).")
    losses = [f"{peer} at D={r['head_dim']}{' causal' if r['causal'] else ''} N={r['seq']} "
              f"({speedup(r, peer):.2f}x)"
              for r in result["rows"] for peer in PEERS[1:]
              if (speedup(r, peer) or 1.0) < 0.995]
    if losses:
        lines.append("- salience is slower than " + ", ".join(losses) + ".")
    target = [r for r in result["rows"] if r["seq"] >= 1024 and speedup(r, "torch SDPA")]
    disturbed = [r for r in target if set(flagged_peers(r, limit)) & {"salience", "torch SDPA"}]
    target = [r for r in target if r not in disturbed]
    missed = [r for r in target if (speedup(r, "torch SDPA") or 0.0) < 2.0]
    if target:
        lines.append(f"- Target, at least 2x torch's SDPA at N >= 1024: met on "
                     f"{len(target) - len(missed)} of {len(target)} shapes"
                     + (f" measured undisturbed ({len(disturbed)} more marked *)" if disturbed else "")
                     + ("." if not missed else ", missed on " + ", ".join(
                         f"D={r['head_dim']}{' causal' if r['causal'] else ''} N={r['seq']} "
                         f"({speedup(r, 'torch SDPA'):.2f}x)" for r in missed) + "."))
    return "\n".join(lines) + "\n"


def write_section(section: str, path: pathlib.Path) -> None:
    """Replaces the text between the markers, or appends markers and text."""
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text + ("\n" if text and not text.endswith("\n\n") else "") + block
    path.write_text(text)


def plot(result: Dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = sorted({(r["head_dim"], r["causal"]) for r in result["rows"]})
    fig, axes = plt.subplots(2, len(variants), figsize=(4 * len(variants), 7), squeeze=False)
    styles = {"salience": "o-", "torch SDPA": "s--", "torch math": "^:", "ONNX Runtime": "d-."}
    for col, (head_dim, causal) in enumerate(variants):
        rows = [r for r in result["rows"] if (r["head_dim"], r["causal"]) == (head_dim, causal)]
        for peer in PEERS:
            points = [(r["seq"], r["ms"][peer], r["gflop"]) for r in rows if r["ms"][peer] is not None]
            if not points:
                continue
            seqs, ms, gflop = zip(*points)
            axes[0][col].plot(seqs, ms, styles[peer], label=peer)
            axes[1][col].plot(seqs, [g / (t / 1e3) for g, t in zip(gflop, ms)], styles[peer], label=peer)
        axes[0][col].set_title(f"D={head_dim}, {'causal' if causal else 'not causal'}")
        axes[0][col].set_yscale("log")
        axes[1][col].set_yscale("log")
        for ax in (axes[0][col], axes[1][col]):
            ax.set_xscale("log", base=2)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel("sequence length N")
        axes[0][col].set_ylabel("ms per call")
        axes[1][col].set_ylabel("GFLOP/s")
    axes[0][0].legend()
    fig.suptitle(f"fp32 attention forward, B=1, H=16 — {result['cpu']}, "
                 f"{result['threads']} threads, {result['date']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N up to 2048, fewer repeats")
    parser.add_argument("--min-seq", type=int, default=256)
    parser.add_argument("--max-seq", type=int, default=16384)
    parser.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reps", type=int, default=3, help="timed runs at least (default 3)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed runs at least")
    parser.add_argument("--max-call-seconds", type=float, default=30.0,
                        help="skip a peer once one call would take longer")
    parser.add_argument("--math-max-gib", type=float, default=1.0,
                        help="largest N x N score matrix the math backend may allocate")
    parser.add_argument("--max-foreign", type=float, default=0.2,
                        help="cores other processes may use during a measurement (default 0.2)")
    parser.add_argument("--retries", type=int, default=3,
                        help="measurements repeated when other processes interfered")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="seconds to wait for a quiet machine before a repeat")
    parser.add_argument("--no-onnx", action="store_true")
    parser.add_argument("--decode", action="store_true",
                        help="decode against a KV cache instead (bench/peers_decode.py)")
    parser.add_argument("--cache-layout", choices=["bnhd", "bhnd"], default="bnhd",
                        help="with --decode: the cache stored [B, N, H, D] (flash-attn) "
                             "or [B, H, N, D] (torch, Hugging Face)")
    parser.add_argument("--backward", action="store_true",
                        help="the backward alone instead (bench/peers_backward.py)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="element type of q, k, v and out for every peer (bfloat16: "
                             "salience's bf16 path against torch's bf16 SDPA)")
    parser.add_argument("--write", action="store_true",
                        help="update BENCHMARKS.md and docs/img/peers.png")
    parser.add_argument("--benchmarks", type=pathlib.Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--plot", type=pathlib.Path, default=ROOT / "docs" / "img" / "peers.png")
    parser.add_argument("--json", type=pathlib.Path, help="save the raw results here")
    parser.add_argument("--from-json", type=pathlib.Path, help="render saved results, time nothing")
    parser.add_argument("--remeasure-flagged", action="store_true",
                        help="with --from-json: time again the rows marked *")
    args = parser.parse_args()
    if args.quick:
        args.max_seq = min(args.max_seq, 2048)
        args.reps, args.min_time = 2, 0.3
    return args


def flagged_peers(row: Dict[str, Any], limit: float) -> List[str]:
    return [p for p, cores in row.get("foreign", {}).items() if cores > limit]


def remeasure_flagged(result: Dict[str, Any], args: argparse.Namespace) -> None:
    """Measures again, in place, the rows of a saved run that other
    processes disturbed, keeping the new row where it is less disturbed."""
    torch.set_num_threads(result["threads"])
    salience.set_num_threads(result["threads"])
    limit = result.get("max_foreign", args.max_foreign)
    redone = 0
    for index, row in enumerate(result["rows"]):
        if not flagged_peers(row, limit):
            continue
        new = bench_shape(row["seq"], row["head_dim"], row["causal"], args, {}, {})
        new["ms"] = {p: new["ms"][p] if row["ms"][p] is not None else None for p in PEERS}
        if len(flagged_peers(new, limit)) <= len(flagged_peers(row, limit)):
            result["rows"][index] = new
            redone += 1
    if redone:
        result["command"] += ("`; disturbed rows measured again by `python bench/peers.py "
                              + " ".join(shlex.quote(a) for a in sys.argv[1:]))


def main() -> None:
    args = parse_args()
    if args.decode:
        import peers_decode  # bench/, the script's directory

        print(peers_decode.run(args, median_seconds))
        return
    if args.backward:
        import peers_backward  # bench/, the script's directory

        print(peers_backward.run(args, median_seconds))
        return
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        if args.remeasure_flagged:
            remeasure_flagged(result, args)
    else:
        result = run_all(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    section = markdown(result)
    print(section)
    if args.write:
        write_section(section, args.benchmarks)
        plot(result, args.plot)
        print(f"wrote {args.benchmarks} and {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
