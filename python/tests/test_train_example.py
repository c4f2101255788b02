"""examples/train_tiny_lm.py, shortened: the character-level model learns
with salience's attention, and its loss curve is torch SDPA's."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import pytest
import torch

import salience

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "train_tiny_lm.py"


def test_tiny_lm_trains_like_torch_sdpa(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("train_tiny_lm", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # its dataclass looks itself up there
    spec.loader.exec_module(example)
    torch_threads = torch.get_num_threads()
    try:  # one thread: quick, and immune to other processes on the cores
        runs = example.main(["--steps", "40", "--context", "48", "--d-model", "48",
                             "--batch", "8", "--print-every", "10", "--threads", "1"])
    finally:
        torch.set_num_threads(torch_threads)
        salience.set_num_threads(0)
    ours, theirs = runs["salience"].losses, runs["torch"].losses
    assert len(ours) == len(theirs) == 40
    # Same weights, same batches: the curves start together (float32
    # rounding apart) and stay close.
    assert all(abs(a - b) < 1e-4 for a, b in zip(ours[:10], theirs[:10]))
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 0.05
    # It learns: from about log(59) = 4.08 to well below.
    assert ours[0] > 3.9
    assert sum(ours[-5:]) / 5 < ours[0] - 1.0
    printed = capsys.readouterr().out
    assert "time per step (median): salience" in printed and "torch sdpa" in printed
