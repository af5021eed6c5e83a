"""The build's stages between the store lookup and the publish: fetch, export, precision,
reference (with the entry's validation set), engine, gate, profile, and the manifest they add
up to.

Imported only on a cache miss (torch, onnx and onnxruntime load here, never for a key hit).
Scratch space is freed as the build goes: the archive once extracted, a torch source once
exported, the fp32 graph once the reference ran on it (when the engine is fp16).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelops_contract.enums import AccuracyMetric
from modelops_contract.layout import REPOSITORY_DIR, VERSION_DIR
from modelops_contract.manifest import EngineManifest, ProfilePoint
from modelops_contract.quantization import BaselineFigures, QuantizationReport
from modelops_contract.request import AccuracyReport, BuildRequest, ShapeFigures, TensorSig
from modelops_contract.validation import VALIDATION_SET_NAME

from . import __version__
from .archive import extract_model, is_archive
from .engines import BuiltEngine, EnginePlan, OrtRunner, TimingCache, build_engine
from .export import OnnxModel, graph_signature, to_onnx
from .fetch import fetch
from .gate import GateResult, check_accuracy, gate_batches, reference_outputs, tolerances
from .int8 import TaskData, baseline, calibrate, judge, run_set, task_data
from .memory import return_large_frees_to_the_os
from .onnx_files import check_external_data, load_graph
from .precision import convert_fp16
from .profile import measure, profile
from .seal import BUILD_RECORD
from .shapes import ShapePlan, plan_shapes, profile_shapes
from .task_gate import gate_metric, judged_by_task
from .validation_set import write_validation_set

log = logging.getLogger(__name__)

# stage(name) -> a context whose `.detail` the step fills for the progress display.
StageFn = Callable[[str], AbstractContextManager[Any]]
_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}


@dataclass(frozen=True)
class BuildInputs:
    """What a build starts from: the request, the engine plan, the key, where to write (the
    staging folder holds only what the entry will: engine files, validation set, build.json)."""

    request: BuildRequest
    plan: EnginePlan
    key: str
    staging: Path
    work: Path
    timing_cache: TimingCache | None
    local_source: bool


def _fetch(job: BuildInputs, stage: StageFn) -> Path:
    request = job.request
    with stage("fetch") as s:
        # The suffix matters: torch.export.load only reads the pt2 archive from a *.pt2 name.
        source = fetch(
            request.source_uri,
            request.sha256,
            job.work / f"source{_SUFFIX[request.format]}",
            max_bytes=request.max_download_bytes,
            local_source=job.local_source,
            staged=request.staged_source,
        )
        size = source.stat().st_size
        s.detail = f"{size / 1024:.1f} KiB, sha256 verified"
        if request.format == "onnx" and is_archive(source):
            graph = extract_model(source, job.work / "model", max_bytes=request.max_download_bytes)
            source.unlink()  # hashed and extracted: its space is scratch again
            files = check_external_data(load_graph(graph), graph)
            s.detail += f"; archive: {graph.name} + {len(files)} external-data file(s)"
            return graph
    return source


def _precision(model: OnnxModel, job: BuildInputs, stage: StageFn) -> OnnxModel:
    request = job.request
    if request.precision != "fp16":
        return model
    with stage("precision") as s:
        fp16_io = any(
            t.data_type == "FP16" for t in [*(request.inputs or []), *(request.outputs or [])]
        )
        path = job.work / "fp16.onnx"
        report = convert_fp16(model.path, path, keep_io_types=not fp16_io)
        inputs, outputs = model.inputs, model.outputs
        if fp16_io:
            graph_in, graph_out = graph_signature(load_graph(path))
            inputs, outputs = _with_types(inputs, graph_in), _with_types(outputs, graph_out)
        s.detail = report.detail()
    return OnnxModel(path=path, inputs=inputs, outputs=outputs, input_dims=model.input_dims)


@dataclass(frozen=True)
class Int8:
    """What the int8 precision stage made: the QDQ graph, the prepared fp32 graph, the report."""

    model: OnnxModel
    prepared: Path
    report: QuantizationReport


def _task(job: BuildInputs, model: OnnxModel, shapes: ShapePlan) -> TaskData | None:
    """The task gate's data (and int8's calibration set), when the gate or int8 needs them."""
    request = job.request
    if not judged_by_task(request) and request.precision != "int8":
        return None
    return task_data(
        request, model.inputs, shapes, job.plan.engine, job.work, local_source=job.local_source
    )


def _int8(model: OnnxModel, job: BuildInputs, task: TaskData, stage: StageFn) -> Int8:
    with stage("precision") as s:
        path, prepared, report = calibrate(
            job.request, model.path, job.work / "int8.onnx", task, job.plan.engine
        )
        s.detail = (
            f"{report.quantized_nodes} nodes int8, {len(report.kept_float)} kept in float; "
            f"{report.method} on {report.samples} samples ({report.calibration})"
        )
    quantized = OnnxModel(path, model.inputs, model.outputs, model.input_dims)
    return Int8(quantized, prepared, report)


def _with_types(sigs: list[TensorSig], graph: list[TensorSig]) -> list[TensorSig]:
    types = {g.name: g.data_type for g in graph}
    return [s.model_copy(update={"data_type": types.get(s.name, s.data_type)}) for s in sigs]


def _remove_graph(path: Path) -> None:
    """Delete a graph and its external-data files (an intermediate no later stage reads)."""
    for data in check_external_data(load_graph(path), path):
        data.unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def _shape_figures(
    runner: Any, engine: EngineFigures, shapes: ShapePlan, budget: float
) -> list[ShapeFigures]:
    figures = []
    for label in shapes.labels():
        point = (
            engine.at_opt
            if label == "opt"
            else measure(runner, engine.inputs, engine.opt_batch, budget, shapes.at(label))
        )
        abs_err, rel_err = engine.gate.per_shape.get(label, (None, None))
        figures.append(
            ShapeFigures(
                shape=label,
                dims={k: list(v) for k, v in shapes.at(label).items()},
                batch=engine.opt_batch,
                max_abs_error=abs_err,
                max_rel_error=rel_err,
                p50_ms=point.p50_ms,
                p99_ms=point.p99_ms,
                throughput=point.throughput,
            )
        )
    return figures


@dataclass(frozen=True)
class EngineFigures:
    """What the gate and the opt-shape profile measured."""

    inputs: list[TensorSig]
    opt_batch: int
    gate: GateResult
    points: list[ProfilePoint]
    at_opt: ProfilePoint


def build_entry(job: BuildInputs, stage: StageFn) -> EngineManifest:
    """Run every stage into `job.staging` (a store's staging dir, or the build Job's output
    folder); the record written there as build.json (not sealed, not published)."""
    return_large_frees_to_the_os()
    request = job.request
    source = _fetch(job, stage)
    with stage("export") as s:
        model = to_onnx(request, source, job.work)
        shapes = plan_shapes(
            model.input_dims, request.shapes, require_ranges=job.plan.engine == "tensorrt"
        )
        s.detail = f"{len(model.inputs)} inputs, {len(model.outputs)} outputs"
    task = _task(job, model, shapes)
    int8 = _int8(model, job, task, stage) if request.precision == "int8" and task else None
    engine_model = int8.model if int8 else _precision(model, job, stage)
    opt = request.effective_opt_batch_size
    with stage("reference") as s:
        references = reference_outputs(
            model.path, model.inputs, shapes, gate_batches(request.max_batch_size, opt)
        )
        samples = write_validation_set(
            job.staging / VALIDATION_SET_NAME, references, model.inputs, engine_model.inputs
        )
        task_reference = (
            run_set(OrtRunner(model.path, reference=True), task.evaluation, opt, cast=True)
            if task
            else None
        )
        if request.precision == "fp16":
            _remove_graph(model.path)  # the fp16 graph is the engine's source from here on
        s.detail = (
            f"{len(references)} points (shapes {', '.join(shapes.labels())}); "
            f"validation set of {samples}"
        )
    version_dir = job.staging / REPOSITORY_DIR / request.model_name / VERSION_DIR
    version_dir.mkdir(parents=True)
    with stage("engine") as s:
        built = build_engine(
            job.plan,
            request,
            engine_model.path,
            engine_model.inputs,
            version_dir,
            job.timing_cache,
            profile=profile_shapes(shapes, request.max_batch_size, opt),
        )
        size = sum((version_dir / f).stat().st_size for f in built.files or [built.file_name])
        s.detail = (
            f"{built.engine} {', '.join(built.files or [built.file_name])} ({size / 1024:.1f} KiB)"
        )
    atol, rtol = tolerances(request.precision, request.atol, request.rtol)
    with stage("gate") as s:
        gate = check_accuracy(
            built.runner,
            references,
            engine_model.inputs,
            precision=request.precision,
            atol=atol,
            rtol=rtol,
            enforce=gate_metric(request) == AccuracyMetric.MAX_ABS,
        )
        s.detail = (
            f"max abs {gate.report.max_abs_error:.3g}, max rel {gate.report.max_rel_error:.3g}"
        )
        if task is not None:
            advice = (int8.prepared, int8.model.path, job.work) if int8 else None
            gate.report = judge(request, gate.report, task_reference, built.runner, task, advice)
            s.detail += f"; {_task_detail(gate.report)}"
    with stage("profile") as s:
        points = profile(
            built.runner,
            engine_model.inputs,
            request.max_batch_size,
            opt,
            request.profile_seconds,
            shapes.at("opt"),
        )
        at_opt = next(p for p in points if p.batch == opt)
        figures = EngineFigures(engine_model.inputs, opt, gate, points, at_opt)
        per_shape = _shape_figures(built.runner, figures, shapes, request.profile_seconds)
        s.detail = f"batch {opt}: p50 {at_opt.p50_ms:.3f} ms, {at_opt.throughput:.0f}/s"
        compared = None
        if int8 is not None:
            compared = baseline(
                model.path,
                size,
                model.inputs,
                shapes,
                opt,
                request.profile_seconds,
                per_shape,
            )
            _remove_graph(model.path)
            s.detail += f"; vs fp32: {compared.size_ratio:.2f}x size"
    quantized = (int8.report, compared) if int8 else None
    return _write_manifest(job, built, engine_model, shapes, figures, per_shape, stage, quantized)


def _task_detail(report: AccuracyReport) -> str:
    parts = []
    if report.agreement is not None:
        parts.append(f"{report.metric} {report.agreement:.4f}")
    if report.accuracy is not None:
        parts.append(f"accuracy {report.accuracy:.4f} (fp32 {report.baseline_accuracy:.4f})")
    return ", ".join(parts) + f" on {report.samples} samples"


def _write_manifest(
    job: BuildInputs,
    built: BuiltEngine,
    model: OnnxModel,
    shapes: ShapePlan,
    figures: EngineFigures,
    per_shape: list[ShapeFigures],
    stage: Any,
    quantized: tuple[QuantizationReport, BaselineFigures | None] | None = None,
) -> EngineManifest:
    """build.json: the manifest without file digests; the publishing side seals it (seal.py)."""
    request, plan = job.request, job.plan
    manifest = EngineManifest(
        key=job.key,
        engine=built.engine,
        precision=request.precision,
        serving_backend=request.serving_backend
        or ("tensorrt_plan" if built.engine == "tensorrt" else "onnxruntime"),
        model_name=request.model_name,
        model_file=built.file_name,
        model_files=built.files or [built.file_name],
        inputs=model.inputs,
        outputs=model.outputs,
        max_batch_size=request.max_batch_size,
        opt_batch_size=figures.opt_batch,
        shape_ranges=shapes.ranges(),
        shapes=per_shape,
        source_sha256=request.sha256,
        format=request.format,
        gpu_product=request.gpu_product or plan.gpu.name,
        tensorrt_version=built.tensorrt_version,
        compute_capability=built.compute_capability,
        versions=_versions(request, built),
        accuracy=figures.gate.report,
        quantization=quantized[0] if quantized else None,
        baseline=quantized[1] if quantized else None,
        profile=figures.points,
        stage_seconds=dict(stage.seconds),
        fallback=built.fallback,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    (job.staging / BUILD_RECORD).write_text(manifest.model_dump_json(by_alias=True, indent=2))
    return manifest


def _versions(request: BuildRequest, built: BuiltEngine) -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {
        "builder": __version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    if request.format != "onnx":
        import torch

        versions["torch"] = str(torch.__version__)
    return versions | built.versions
