"""`python -m salience`: the build's targets, the machine's, the bf16 path
and the measured peaks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import salience
from salience import _salience


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "salience", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_json_report_without_peaks() -> None:
    result = _run("--no-peak", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["version"] == salience.__version__
    build, machine = report["build"], report["machine"]
    assert "SCALAR" in build["compiled_targets"] or "EMU128" in build["compiled_targets"]
    # What the CPU runs is a subset of what was compiled; dispatch takes the best.
    assert set(machine["runnable_targets"]) <= set(build["compiled_targets"])
    assert machine["target"] == machine["runnable_targets"][0]
    assert machine["bf16_path"] in ("dot", "widen")
    if not machine["bf16_dot"]:
        assert machine["bf16_path"] == "widen"
    assert machine["threads"] >= 1 and "peak" not in report


def test_text_report_with_peaks() -> None:
    result = _run("--seconds", "0.2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"salience {salience.__version__} ")
    for label in ("compiled", "runnable", "bf16 ", "fp32 FMA", "DRAM"):
        assert any(line.startswith(label) for line in lines), label


def test_peaks_are_measured() -> None:
    peak = _salience.measure_peak(0.2)
    assert peak["fma_gflops_one"] > 0 and peak["fma_gflops_all"] > 0
    assert peak["dram_gbs_one"] > 0 and peak["dram_gbs_all"] > 0
    assert peak["target"] == _salience.machine_info()["target"]


@pytest.mark.parametrize("seconds", ["0", "-1", "1000"])
def test_bad_budget_is_a_usage_error(seconds: str) -> None:
    result = _run("--seconds", seconds)
    assert result.returncode == 2 and "--seconds" in result.stderr
    with pytest.raises(ValueError, match="seconds"):
        _salience.measure_peak(float(seconds))
