"""The accuracy gate: the built engine against an fp32 ONNX Runtime reference, same inputs.

Defaults by precision (docs/builder.md explains them):
- fp32: atol 1e-5, rtol 1e-4. Same arithmetic, but fused kernels, other threads and GPU
  reductions add in another order: a few ulp of float32 on values of order 1.
- fp16: atol 1e-2, rtol 1e-2. fp16 keeps 11 significant bits (relative step ~1e-3); errors of
  several steps accumulate through a network, so 1e-2 passes sound conversions and still catches
  overflow, underflow and ops that must stay in fp32.
NaN or Inf in an engine output always fails, whatever the tolerance.

The reference runs first and is released before the engine is built (memory.py makes glibc hand
its weights back), so a large model is in memory once, not twice; the gate then runs the engine
on the same seeded inputs at every distinct shape (min, opt, max of the shape plan) and batch
(1, opt, max).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelops_contract.request import AccuracyReport, TensorSig
from modelops_contract.shapes import ShapeLabel

from .engines import OrtRunner, Runner
from .errors import BuildError
from .example_inputs import example_inputs
from .shapes import ShapePlan, gate_points

DEFAULT_TOLERANCES = {"fp32": (1e-5, 1e-4), "fp16": (1e-2, 1e-2), "int8": (1e-1, 1e-1)}
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


@dataclass(frozen=True)
class Reference:
    """The fp32 reference's outputs for the seeded inputs at one (shape, batch)."""

    shape: ShapeLabel
    batch: int
    dims: dict[str, tuple[int, ...]]
    outputs: dict[str, Any]

    def feeds(self, inputs: list[TensorSig]) -> dict[str, Any]:
        """The same seeded inputs the reference ran (regenerated, never stored)."""
        return example_inputs(inputs, self.batch, seed=SEED + self.batch, dims=self.dims)

    def where(self) -> str:
        """`opt shape (batch 4, input_ids [64])` for messages."""
        dims = ", ".join(f"{k} {list(v)}" for k, v in self.dims.items())
        return f"{self.shape} shape (batch {self.batch}, {dims})"


def _run(runner: Runner, feeds: dict[str, Any], what: str, point: Reference) -> list[Any]:
    try:
        return runner.run(feeds)
    except BuildError:
        raise
    except Exception as exc:  # onnxruntime/tensorrt errors for a shape the model cannot take
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise BuildError(
            "ShapeRangeFailed",
            f"the {what} fails at the {point.where()}: {first}; narrow spec.build.shapes to "
            "sizes the model supports",
        ) from exc


def reference_outputs(
    reference_onnx: Path, inputs: list[TensorSig], plan: ShapePlan, batches: Iterable[int]
) -> list[Reference]:
    """Run the fp32 graph (ONNX Runtime, no fusions, one thread) at every gate point, then
    release it."""
    runner = OrtRunner(reference_onnx, reference=True)
    points = []
    for shape, batch in gate_points(plan, list(batches)):
        point = Reference(shape, batch, plan.at(shape), {})
        values = _run(runner, runner.cast(point.feeds(inputs)), "fp32 reference", point)
        points.append(
            Reference(shape, batch, point.dims, dict(zip(runner.output_names, values, strict=True)))
        )
    return points


@dataclass
class GateResult:
    """The gate's report, and the worst errors at each shape."""

    report: AccuracyReport
    per_shape: dict[str, tuple[float, float]] = field(default_factory=dict)


def check_accuracy(
    engine: Runner,
    references: list[Reference],
    inputs: list[TensorSig],
    *,
    precision: str,
    atol: float,
    rtol: float,
    enforce: bool = True,
) -> GateResult:
    """Run the engine at the references' points; AccuracyGateFailed with the figures.

    `enforce` False (a gate judged by the task, task_gate.py): the errors are only measured,
    but NaN/Inf or a wrong shape still fails; the atol recorded then covers what was measured."""
    result = GateResult(AccuracyReport(max_abs_error=0.0, max_rel_error=0.0))
    failures: list[str] = []
    for point in references:
        got = dict(
            zip(
                engine.output_names, _run(engine, point.feeds(inputs), "engine", point), strict=True
            )
        )
        worst = result.per_shape.get(point.shape, (0.0, 0.0))
        for name, value in point.outputs.items():
            abs_err, rel_err, failure = compare(name, got[name], value, atol, rtol)
            worst = (max(worst[0], abs_err), max(worst[1], rel_err))
            if failure and (enforce or not np.isfinite(abs_err)):
                failures.append(f"{point.where()}: {failure}")
        result.per_shape[point.shape] = worst
    max_abs = max((v[0] for v in result.per_shape.values()), default=0.0)
    max_rel = max((v[1] for v in result.per_shape.values()), default=0.0)
    if failures:
        raise BuildError(
            "AccuracyGateFailed",
            f"{precision} engine differs from the fp32 reference: max abs error {max_abs:.4g}, "
            f"max rel error {max_rel:.4g} (atol {atol:g}, rtol {rtol:g}); "
            + "; ".join(failures[:3]),
        )
    result.report = AccuracyReport(
        max_abs_error=max_abs, max_rel_error=max_rel, atol=atol, rtol=rtol, passed=True
    )
    if not enforce:
        # The recorded tolerance is what the rollout's validation run holds the served engine
        # to: the precision's atol, or twice the largest error this gate saw when that is more
        # (an int8 engine judged by agreement may differ from fp32 by more than 0.1 in logits).
        widened = max(atol, 2 * max_abs)
        result.report = result.report.model_copy(update={"atol": widened})
    return result
