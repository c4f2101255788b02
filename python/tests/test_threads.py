"""The GIL is released while a kernel runs: other Python threads make
progress during a call, and calls from several threads run side by side
with the results of serial calls."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

import salience


def test_other_threads_run_during_a_call() -> None:
    """A counting thread advances while the main thread is inside one long
    kernel call; were the GIL held, it could not count at all meanwhile."""
    q = torch.randn(1, 1536, 4, 64)
    salience.attention(q, q, q, num_threads=1)  # warm up
    count = 0
    counting = threading.Event()
    stop = threading.Event()

    def counter() -> None:
        nonlocal count
        counting.set()
        while not stop.is_set():
            count += 1

    thread = threading.Thread(target=counter)
    thread.start()
    counting.wait()
    try:
        before = count
        start = time.perf_counter()
        salience.attention(q, q, q, num_threads=1)
        elapsed = time.perf_counter() - start
        during = count - before
    finally:
        stop.set()
        thread.join()
    assert elapsed > 0.01, "the call was too short to tell"
    assert during > 1000, (during, elapsed)


def test_concurrent_calls_match_serial_calls() -> None:
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((2, 200, 4, 32), dtype=np.float32) for _ in range(8)]
    serial = [salience.flash_attn_func(x, x, x, causal=True) for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda x: salience.flash_attn_func(x, x, x, causal=True), inputs))
    for a, b in zip(serial, parallel):
        assert np.array_equal(a, b)


def test_concurrent_calls_with_torch_tensors() -> None:
    inputs = [torch.randn(1, 4, 150, 64) for _ in range(6)]
    serial = [salience.scaled_dot_product_attention(x, x, x, is_causal=True) for x in inputs]
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(pool.map(lambda x: salience.scaled_dot_product_attention(x, x, x, is_causal=True), inputs))
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))
