"""The accuracy gate: the built engine against an fp32 ONNX Runtime reference, same inputs.

Defaults by precision (docs/builder.md explains them):
- fp32: atol 1e-5, rtol 1e-4. Same arithmetic, but fused kernels, other threads and GPU
  reductions add in another order: a few ulp of float32 on values of order 1.
- fp16: atol 1e-2, rtol 1e-2. fp16 keeps 11 significant bits (relative step ~1e-3); errors of
  several steps accumulate through a network, so 1e-2 passes sound conversions and still catches
  overflow, underflow and ops that must stay in fp32.
NaN or Inf in an engine output always fails, whatever the tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from modelops_contract.request import AccuracyReport, TensorSig

from .engines import OrtRunner, Runner
from .errors import BuildError
from .export import example_inputs

DEFAULT_TOLERANCES = {"fp32": (1e-5, 1e-4), "fp16": (1e-2, 1e-2)}
SEED = 20240601


def tolerances(precision: str, atol: float | None, rtol: float | None) -> tuple[float, float]:
    """The request's atol/rtol, or the precision's defaults for those not given."""
    default_atol, default_rtol = DEFAULT_TOLERANCES[precision]
    return (default_atol if atol is None else atol, default_rtol if rtol is None else rtol)


def gate_batches(max_batch: int, opt_batch: int) -> list[int]:
    """Batch sizes the gate runs: 1, opt and max (dynamic-batch bugs show at the edges)."""
    return sorted({1, opt_batch, max_batch})


def compare(
    name: str, got: Any, want: Any, atol: float, rtol: float
) -> tuple[float, float, str | None]:
    """(max abs error, max rel error, failure or None) for one output."""
    got64, want64 = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got64.shape != want64.shape:
        return np.inf, np.inf, f"output '{name}': shape {got64.shape}, reference {want64.shape}"
    if not np.all(np.isfinite(got64)):
        bad = int(np.count_nonzero(~np.isfinite(got64)))
        return np.inf, np.inf, f"output '{name}': {bad} NaN/Inf values"
    diff = np.abs(got64 - want64)
    max_abs = float(diff.max(initial=0.0))
    # Relative error only where the reference is not ~0: elsewhere it is meaningless noise.
    significant = np.abs(want64) > max(atol, 1e-12)
    rel = diff[significant] / np.abs(want64[significant])
    max_rel = float(rel.max(initial=0.0))
    bad_mask = diff > atol + rtol * np.abs(want64)
    if bad_mask.any():
        worst = np.unravel_index(int(np.argmax(diff - rtol * np.abs(want64))), diff.shape)
        return (
            max_abs,
            max_rel,
            (
                f"output '{name}': {int(bad_mask.sum())} of {diff.size} values outside "
                f"atol {atol:g} + rtol {rtol:g}; worst at {tuple(int(i) for i in worst)}: "
                f"engine {got64[worst]:.6g}, reference {want64[worst]:.6g}"
            ),
        )
    return max_abs, max_rel, None


def check_accuracy(
    engine: Runner,
    reference_onnx: Path,
    inputs: list[TensorSig],
    batches: Iterable[int],
    *,
    precision: str,
    atol: float,
    rtol: float,
) -> AccuracyReport:
    """Run engine and reference on seeded inputs; AccuracyGateFailed with the figures on failure."""
    reference = OrtRunner(reference_onnx, reference=True)
    max_abs = max_rel = 0.0
    failures: list[str] = []
    for batch in batches:
        feeds = example_inputs(inputs, batch, seed=SEED + batch)
        want = dict(zip(reference.output_names, reference.run(reference.cast(feeds)), strict=True))
        got = dict(zip(engine.output_names, engine.run(feeds), strict=True))
        for name, value in want.items():
            abs_err, rel_err, failure = compare(name, got[name], value, atol, rtol)
            max_abs, max_rel = max(max_abs, abs_err), max(max_rel, rel_err)
            if failure:
                failures.append(f"batch {batch}: {failure}")
    if failures:
        raise BuildError(
            "AccuracyGateFailed",
            f"{precision} engine differs from the fp32 reference: max abs error {max_abs:.4g}, "
            f"max rel error {max_rel:.4g} (atol {atol:g}, rtol {rtol:g}); "
            + "; ".join(failures[:3]),
        )
    return AccuracyReport(
        max_abs_error=max_abs, max_rel_error=max_rel, atol=atol, rtol=rtol, passed=True
    )
