#!/usr/bin/env python3
"""Runs the core forward benchmarks with the `salience` CLI, in one process
per shape on this machine, and writes the figures into BENCHMARKS.md.

Every figure is a ratio measured in the same run: GFLOP/s against the fp32
FMA peak that `salience peak` measures at the start, and two threads against
one. Usage:

    python3 bench/core_report.py [--cli build/salience] [--write] [--quick]

Without --write the markdown section is printed; with it, the section between
`<!-- core:begin -->` and `<!-- core:end -->` in BENCHMARKS.md is replaced.
"""
import argparse
import datetime
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- core:begin -->", "<!-- core:end -->"


def run_cli(cli, *args):
    """Runs the CLI and returns its stdout lines (raises on failure)."""
    done = subprocess.run([cli, *args], check=True, capture_output=True, text=True)
    return done.stdout.splitlines()


def peak(cli):
    return json.loads(run_cli(cli, "peak", "--json")[-1])


def bench(cli, repeats, **shape):
    args = ["bench", "--json", "--repeats", str(repeats), "--warmup", "1"]
    for key, value in shape.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        else:
            args += [flag, str(value)]
    return json.loads(run_cli(cli, *args)[-1])


def pct(gflops, peak_gflops):
    return f"{100.0 * gflops / peak_gflops:.1f}%"


def report(cli, quick):
    machine = peak(cli)
    peak_all = machine["fma_gflops_all"]
    peak_one = machine["fma_gflops_one"]
    repeats = 3 if quick else 5
    lines = []
    out = lines.append
    out(f"Machine: {machine['cpu']}, {machine['threads']} threads, SIMD target "
        f"{machine['target']}. Measured peak: fp32 FMA {peak_all:.0f} GFLOP/s on all "
        f"threads, {peak_one:.0f} on one; DRAM read {machine['dram_gbs_all']:.1f} GB/s.")
    out(f"Date: {datetime.date.today().isoformat()}. Command: "
        f"`python3 bench/core_report.py --write` (each row is `salience bench --json` "
        f"on that shape; FLOPs = 4·B·H·Nq·Nk·D, halved for square causal, visible pairs "
        f"counted exactly for windows).")
    out("")
    out("### Forward, fp32, two threads, B=1, H=16")
    out("")
    out("| N | D | mask | ms | GFLOP/s | % of peak | +MiB resident |")
    out("|---|---|---|---|---|---|---|")
    sizes = [1024, 4096] if not quick else [1024]
    for n in sizes:
        for d in (64, 128):
            for causal in ("none", "bottom-right"):
                row = bench(cli, repeats, heads_q=16, seq_q=n, head_dim=d,
                            causal=causal, threads=2)
                out(f"| {n} | {d} | {causal} | {1e3 * row['seconds']:.1f} | "
                    f"{row['gflops']:.0f} | {pct(row['gflops'], peak_all)} | "
                    f"{row['added_mib']:.1f} |")
    out("")
    scale_n = 4096 if not quick else 1024
    out(f"### Thread scaling, N={scale_n}, dense")
    out("")
    out("| D | 1 thread GFLOP/s (% of 1-thread peak) | 2 threads GFLOP/s (% of peak) | speed-up |")
    out("|---|---|---|---|")
    for d in (64, 128):
        n = scale_n
        one = bench(cli, repeats, heads_q=16, seq_q=n, head_dim=d, threads=1)
        two = bench(cli, repeats, heads_q=16, seq_q=n, head_dim=d, threads=2)
        out(f"| {d} | {one['gflops']:.0f} ({pct(one['gflops'], peak_one)}) | "
            f"{two['gflops']:.0f} ({pct(two['gflops'], peak_all)}) | "
            f"{one['seconds'] / two['seconds']:.2f}x |")
    out("")
    n = 4096 if not quick else 1024
    out(f"### Masks that skip work: N={n}, D=64, H=16, sliding window of 512 keys "
        "(useful FLOPs only)")
    out("")
    out("| given as | ms | useful GFLOP/s | % of peak |")
    out("|---|---|---|---|")
    for as_mask in (False, True):
        shape = dict(heads_q=16, seq_q=n, head_dim=64, window_left=512,
                     window_right=0, threads=2)
        if as_mask:
            shape["as_mask"] = True
        row = bench(cli, repeats, **shape)
        label = "bool mask tensor [1,1,N,N]" if as_mask else "window option"
        out(f"| {label} | {1e3 * row['seconds']:.1f} | {row['gflops']:.0f} | "
            f"{pct(row['gflops'], peak_all)} |")
    out("")
    out("### Memory independent of N: one head, D=64")
    out("")
    out("| N | ms | GFLOP/s | +MiB resident beyond q, k, v, out |")
    out("|---|---|---|---|")
    n = 131072 if not quick else 16384
    row = bench(cli, 1, heads_q=1, seq_q=n, head_dim=64, threads=2)
    out(f"| {n} | {1e3 * row['seconds']:.0f} | {row['gflops']:.0f} | "
        f"{row['added_mib']:.1f} |")
    return "\n".join(lines)


def write(section):
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", default=str(ROOT / "build" / "salience"))
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    args = parser.parse_args()
    section = report(args.cli, args.quick)
    print(section)
    if args.write:
        write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
