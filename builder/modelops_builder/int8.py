"""The int8 build's own steps, called from steps.py: calibrate (the precision stage), the task
gate's data run through a runner, the failure's figures and advice, and the fp32 baseline the
engine is compared with (size, latency and throughput per shape).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelops_contract.quantization import (
    BaselineFigures,
    BaselineShape,
    CalibrationRequest,
    QuantizationReport,
)
from modelops_contract.request import AccuracyReport, BuildRequest, ShapeFigures, TensorSig

from .datasets import (
    CALIBRATION_SEED,
    EVALUATION_SEED,
    MAX_CALIBRATION_SAMPLES,
    RANDOM_WARNING,
    DataSet,
    builder_set,
    read_set,
)
from .engines import OrtRunner, Runner, ort_providers
from .errors import BuildError
from .onnx_files import model_bytes
from .profile import measure
from .quantize import quantize_int8
from .quantize_advice import advise
from .shapes import ShapePlan
from .task_gate import TaskVerdict, judge_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskData:
    """The gate's data set (labelled set, else calibration set, else the builder's held-out
    inputs) and, for int8, what calibrated the engine."""

    evaluation: DataSet
    calibration: DataSet | None = None


def _ranges(shapes: ShapePlan, engine: str) -> dict[str, Any]:
    """TensorRT takes only its profile's dims; ONNX Runtime any the graph allows."""
    if engine != "tensorrt":
        return {}
    low, high = shapes.at("min"), shapes.at("max")
    return {name: (low[name], high[name]) for name in low}


def task_data(
    request: BuildRequest,
    inputs: list[TensorSig],
    shapes: ShapePlan,
    engine: str,
    work: Path,
    *,
    local_source: bool,
) -> TaskData:
    """Fetch and check the calibration and labelled sets; the builder's inputs stand in."""
    ranges = _ranges(shapes, engine)
    labelled = None
    if request.labelled_set is not None:
        labelled = read_set(
            "spec.validation.source",
            request.labelled_set,
            inputs,
            work,
            local_source=local_source,
            ranges=ranges,
            labelled=True,
        )
    calibration = None
    if request.precision == "int8":
        given = request.calibration.data if request.calibration else None
        calibration = (
            read_set(
                "spec.build.calibration.source",
                given,
                inputs,
                work,
                local_source=local_source,
                ranges=ranges,
            ).head(MAX_CALIBRATION_SAMPLES)
            if given is not None
            else builder_set(inputs, shapes.at("opt"), CALIBRATION_SEED)
        )
    evaluation = labelled or (
        calibration
        if calibration is not None and calibration.origin != "builder"
        else builder_set(inputs, shapes.at("opt"), EVALUATION_SEED)
    )
    return TaskData(evaluation, calibration)


def calibrate(
    request: BuildRequest, source: Path, dest: Path, data: TaskData, engine: str
) -> tuple[Path, Path, QuantizationReport]:
    """The QDQ graph of `source`: (its path, the prepared fp32 graph, the report)."""
    assert data.calibration is not None
    settings = request.calibration or CalibrationRequest()
    done = quantize_int8(
        source,
        dest,
        data.calibration,
        settings,
        batch=request.max_batch_size,
        symmetric_activations=engine == "tensorrt",
    )
    report = QuantizationReport(
        method=settings.method,
        calibration=data.calibration.origin,
        samples=data.calibration.samples,
        quantized_nodes=done.quantized_nodes,
        kept_float=done.kept_float,
        warning=RANDOM_WARNING if data.calibration.origin == "builder" else None,
    )
    if report.warning:
        log.warning("%s", report.warning)
    return done.path, done.prepared, report


def run_set(runner: Runner, data: DataSet, batch: int, cast: bool = False) -> Any:
    """The first output over the whole set, in batches of at most `batch`."""
    parts = []
    for feeds in data.batches(batch):
        if cast and isinstance(runner, OrtRunner):
            feeds = runner.cast(feeds)
        parts.append(np.asarray(runner.run(feeds)[0]))
    return np.concatenate(parts)


def judge(
    request: BuildRequest,
    elementwise: AccuracyReport,
    reference: Any,
    engine: Runner,
    data: TaskData,
    advice: tuple[Path, Path, Path] | None,
) -> AccuracyReport:
    """The task gate: its report, or AccuracyGateFailed with the figures and (int8) the nodes to
    keep in float. `advice`: (prepared fp32 graph, QDQ graph, work dir) of an int8 build."""
    got = run_set(engine, data.evaluation, request.max_batch_size)
    verdict = judge_task(request, elementwise, reference, got, data.evaluation.labels)
    if not verdict.failures:
        return verdict.report
    raise BuildError("AccuracyGateFailed", failure_message(request, verdict, data, advice))


def failure_message(
    request: BuildRequest,
    verdict: TaskVerdict,
    data: TaskData,
    advice: tuple[Path, Path, Path] | None,
) -> str:
    """The figures of a failed task gate, and what to do."""
    report = verdict.report
    figures = [f"{request.precision} engine fails the gate: {'; '.join(verdict.failures)}"]
    figures.append(
        f"on {report.samples} samples ({data.evaluation.origin}); max abs error "
        f"{report.max_abs_error:.4g} vs fp32"
    )
    if verdict.worst:
        figures.append(f"worst: {verdict.worst}")
    if advice is not None:
        names = advise(*advice[:2], data.evaluation, advice[2])
        keep = f"keep in higher precision: spec.build.calibration.keepFloat: {names}"
        figures.append(keep if names else "no single node stands out: build fp16 or fp32")
    return "; ".join(figures)


def baseline(
    fp32: Path,
    engine_bytes: int,
    inputs: list[TensorSig],
    shapes: ShapePlan,
    opt_batch: int,
    budget: float,
    figures: list[ShapeFigures],
) -> BaselineFigures:
    """The fp32 graph in ONNX Runtime (the engine's fp32 counterpart), measured as the engine
    was: the opt batch at each shape, same time budget."""
    providers = ort_providers()
    runner = OrtRunner(fp32, providers)
    rows = []
    for figure in figures:
        point = measure(runner, inputs, opt_batch, budget, shapes.at(figure.shape))
        ratio = (figure.throughput or 0.0) / point.throughput if point.throughput else 0.0
        rows.append(
            BaselineShape(
                shape=figure.shape,
                batch=opt_batch,
                p50_ms=point.p50_ms,
                throughput=point.throughput,
                throughput_ratio=round(ratio, 3),
            )
        )
    size = model_bytes(fp32)
    return BaselineFigures(
        runtime=f"onnxruntime fp32 ({providers[0]})",
        engine_bytes=engine_bytes,
        baseline_bytes=size,
        size_ratio=round(engine_bytes / size, 4) if size else 0.0,
        shapes=rows,
    )
