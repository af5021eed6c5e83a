"""Latency and throughput per batch size, measured in windows until three agree within 10%.

Every batch size runs at the opt shape (spec.build.shapes' opt dims); the pipeline measures the
opt batch at the min and max shapes too, for the per-shape figures.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelops_contract.manifest import ProfilePoint
from modelops_contract.request import TensorSig

from .engines import Runner
from .example_inputs import example_inputs

STABLE_WINDOWS = 3
STABLE_SPREAD = 0.10
MIN_WINDOW_RUNS = 5


def profile_batches(max_batch: int, opt_batch: int) -> list[int]:
    """1, 2, 4, ... below max, then opt and max."""
    batches, batch = {max_batch, min(opt_batch, max_batch)}, 1
    while batch < max_batch:
        batches.add(batch)
        batch *= 2
    return sorted(batches)


def _window(runner: Runner, feeds: dict[str, Any], seconds: float) -> list[float]:
    latencies: list[float] = []
    start = time.perf_counter()
    while len(latencies) < MIN_WINDOW_RUNS or time.perf_counter() - start < seconds:
        began = time.perf_counter()
        runner.run(feeds)
        latencies.append(time.perf_counter() - began)
    return latencies


def measure(
    runner: Runner,
    inputs: list[TensorSig],
    batch: int,
    budget_s: float,
    dims: Mapping[str, Sequence[int]] | None = None,
) -> ProfilePoint:
    """One batch size at `dims` (default: the opt shape's): windows of budget/10 until the last
    three means agree or time runs out."""
    feeds = example_inputs(inputs, batch, dims=dims)
    runner.run(feeds)  # warm-up: first runs allocate buffers and pick kernels
    window_s = min(max(budget_s / 10, 0.01), 0.25)
    windows: list[list[float]] = []
    deadline = time.perf_counter() + budget_s
    stable = False
    while True:
        windows.append(_window(runner, feeds, window_s))
        means = [float(np.mean(w)) for w in windows[-STABLE_WINDOWS:]]
        if len(means) == STABLE_WINDOWS and max(means) <= min(means) * (1 + STABLE_SPREAD):
            stable = True
            break
        if time.perf_counter() >= deadline and len(windows) >= STABLE_WINDOWS:
            break
    recent = np.concatenate([np.asarray(w) for w in windows[-STABLE_WINDOWS:]])
    return ProfilePoint(
        batch=batch,
        p50_ms=float(np.percentile(recent, 50) * 1e3),
        p99_ms=float(np.percentile(recent, 99) * 1e3),
        throughput=float(batch * len(recent) / recent.sum()),
        windows=len(windows),
        stable=stable,
    )


def profile(
    runner: Runner,
    inputs: list[TensorSig],
    max_batch: int,
    opt_batch: int,
    budget_s: float,
    dims: Mapping[str, Sequence[int]] | None = None,
) -> list[ProfilePoint]:
    """A ProfilePoint per batch size (powers of two, opt and max), all at the opt shape."""
    batches = profile_batches(max_batch, opt_batch)
    return [measure(runner, inputs, batch, budget_s, dims) for batch in batches]
