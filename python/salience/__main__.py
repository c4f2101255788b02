"""`python -m salience`: what this build of salience runs on this machine.

Prints the version, the SIMD targets the kernels were compiled for and the
ones this CPU runs (the first is the one dispatch picks), the path bf16
products take here ('dot': AVX512-BF16's vdpbf16ps; 'widen': widened to
fp32 for the fp32 micro-kernels), and this machine's measured peaks (fp32 FMA
and bf16 dot GFLOP/s, DRAM read GB/s, on all cores and on one thread), the
probe `salience peak` runs. --json prints one JSON object instead;
--no-peak skips the measurement (about --seconds seconds).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any, Dict, List, Optional

from salience import _salience


def _report(seconds: Optional[float]) -> Dict[str, Any]:
    report: Dict[str, Any] = {
        "version": _salience.__version__,
        "module": _salience.__file__,
        "python": platform.python_version(),
        "build": _salience.build_info(),
        "machine": _salience.machine_info(),
    }
    if seconds is not None:
        report["peak"] = _salience.measure_peak(seconds)
    return report


def _rate(all_threads: float, one_thread: float, unit: str) -> str:
    if one_thread <= 0.0:
        return "none on this CPU"
    return f"{all_threads:8.1f} {unit} all cores, {one_thread:7.1f} {unit} one thread"


def _print(report: Dict[str, Any]) -> None:
    build, machine = report["build"], report["machine"]
    bf16 = {"dot": "dot (vdpbf16ps on bf16 pairs)",
            "widen": "widen (bf16 widened to fp32, fp32 micro-kernels)"}[machine["bf16_path"]]
    lines = [
        f"salience {report['version']} ({report['module']})",
        f"python   {report['python']}, {build['compiler']}, OpenMP {build['openmp']}",
        f"cpu      {machine['cpu']}, {machine['threads']} threads",
        f"compiled {', '.join(build['compiled_targets'])}",
        f"runnable {', '.join(machine['runnable_targets'])} (dispatch picks {machine['target']})",
        f"bf16     {bf16}",
    ]
    peak = report.get("peak")
    if peak is not None:
        lines += [
            f"fp32 FMA {_rate(peak['fma_gflops_all'], peak['fma_gflops_one'], 'GFLOP/s')}",
            f"bf16 dot {_rate(peak['bf16_dot_gflops_all'], peak['bf16_dot_gflops_one'], 'GFLOP/s')}",
            f"DRAM     {_rate(peak['dram_gbs_all'], peak['dram_gbs_one'], 'GB/s')}",
        ]
    print("\n".join(lines))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m salience",
        description="What this build of salience runs on this machine, and its peaks.")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--no-peak", action="store_true",
                        help="skip the peak measurement")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="time budget of the peak probes (default 2)")
    args = parser.parse_args(argv)
    if not 0.0 < args.seconds <= 600.0:
        parser.error(f"--seconds: expected a budget in (0, 600], got {args.seconds}")
    report = _report(None if args.no_peak else args.seconds)
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
