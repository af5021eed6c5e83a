"""build(): model -> verified, exported, built, gated, profiled and published store entry.

Order matters: the engine choice and the key come first, so a complete store entry returns at
once (zero build time, nothing fetched); the store is staged before the download, so a store
that cannot be written fails before any bytes move; the sha256 is checked before any parser
sees the file; nothing is published unless the accuracy gate passed.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from modelops_contract.key import engine_key, key_digest
from modelops_contract.layout import MANIFEST_NAME, REPOSITORY_DIR, VERSION_DIR, entry_uri
from modelops_contract.manifest import EngineManifest
from modelops_contract.request import BuildRequest, BuildSummary, LatencyReport, TensorSig
from modelops_contract.tritonconfig import ServingOptions, render_model_config

from . import __version__
from .engines import BuiltEngine, EnginePlan, TimingCache, build_engine, plan_engine
from .errors import BuildError
from .store import Store, open_store

__all__ = ["BuildError", "BuildResult", "StageReporter", "build", "summary_of"]

log = logging.getLogger(__name__)

STAGES = ("plan", "fetch", "export", "precision", "engine", "gate", "profile", "publish")
WORK_DIR_ENV = "MODELOPS_WORK_DIR"


class StageReporter(Protocol):
    """Progress callbacks (the CLI's rich display); stages are the names in STAGES."""

    def start(self, stage: str) -> None:
        """A stage begins."""
        ...

    def done(self, stage: str, seconds: float, detail: str) -> None:
        """A stage ended successfully after `seconds`, with a one-line detail."""
        ...


@dataclass
class BuildResult:
    """What build() returns: the summary line, the manifest, the entry dir, and whether cached."""

    summary: BuildSummary
    manifest: EngineManifest
    entry: Path
    cached: bool


@dataclass
class _Stages:
    reporter: StageReporter | None
    seconds: dict[str, float] = field(default_factory=dict)
    detail: str = ""

    @contextmanager
    def __call__(self, stage: str) -> Iterator[_Stages]:
        if self.reporter:
            self.reporter.start(stage)
        self.detail = ""
        began = time.perf_counter()
        yield self
        elapsed = time.perf_counter() - began
        self.seconds[stage] = round(elapsed, 4)
        log.info("stage %s: %.3fs %s", stage, elapsed, self.detail)
        if self.reporter:
            self.reporter.done(stage, elapsed, self.detail)


def compute_key(request: BuildRequest, plan: EnginePlan) -> str:
    """The engine key of what will really be built (a fallback is keyed as onnxruntime)."""
    return engine_key(
        model_sha256=request.sha256,
        format=request.format,
        engine=plan.engine,
        precision=request.precision,
        max_batch_size=request.max_batch_size,
        opt_batch_size=request.effective_opt_batch_size,
        inputs=[s.to_wire() for s in request.inputs] if request.inputs else None,
        gpu_product=request.gpu_product or plan.gpu.name,
        tensorrt_version=plan.tensorrt_version,
        shapes=[s.key_material() for s in request.shapes or []],
    )


def summary_of(manifest: EngineManifest, uri: str, *, cached: bool) -> BuildSummary:
    """The termination-message summary of a manifest (figures at the opt batch)."""
    point = next((p for p in manifest.profile if p.batch == manifest.opt_batch_size), None)
    return BuildSummary(
        ok=True,
        key=manifest.key,
        uri=uri,
        engine=manifest.engine,
        precision=manifest.precision,
        tensorrt_version=manifest.tensorrt_version,
        compute_capability=manifest.compute_capability,
        accuracy=manifest.accuracy,
        latency_ms=LatencyReport(p50=point.p50_ms, p99=point.p99_ms) if point else None,
        throughput=point.throughput if point else None,
        cached=cached,
        fallback=manifest.fallback,
    )


def _timing_cache(store: Store, plan: EnginePlan, request: BuildRequest) -> TimingCache | None:
    if plan.engine != "tensorrt":
        return None
    gpu = re.sub(r"[^A-Za-z0-9_.-]+", "_", plan.gpu.name or request.gpu_product or "gpu")
    name = f"_timing_cache/{gpu}-trt{plan.tensorrt_version}.cache"

    def save(data: bytes) -> None:
        # A lost timing cache only slows the next build: never fail a build over it.
        try:
            store.write_blob(name, data)
        except BuildError as exc:
            log.warning("timing cache not saved: %s", exc)

    return TimingCache(name=name, data=store.read_blob(name), save=save)


def _copy_python_backend(version_dir: Path) -> None:
    """model.py beside model.onnx: the same entry serves in the CPU Triton (python backend)."""
    source = importlib.resources.files("modelops_builder.triton_cpu").joinpath("model.py")
    if not source.is_file():
        log.warning(
            "triton_cpu/model.py is not packaged: entry serves only with the onnxruntime "
            "backend, not with the CPU Triton's python backend"
        )
        return
    (version_dir / "model.py").write_bytes(source.read_bytes())


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


def _build_into(
    request: BuildRequest,
    plan: EnginePlan,
    key: str,
    store: Store,
    staging: Path,
    work: Path,
    stage: _Stages,
    local_source: bool,
) -> EngineManifest:
    # Heavy modules are imported here, not at the top: a cache hit needs none of them.
    from .export import to_onnx
    from .fetch import fetch
    from .gate import check_accuracy, gate_batches, tolerances
    from .precision import convert_fp16
    from .profile import profile

    with stage("fetch") as s:
        # The suffix matters: torch.export.load only reads the pt2 archive from a *.pt2 name.
        suffix = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
        source = fetch(
            request.source_uri,
            request.sha256,
            work / f"source{suffix[request.format]}",
            max_bytes=request.max_download_bytes,
            local_source=local_source,
        )
        s.detail = f"{source.stat().st_size / 1024:.1f} KiB, sha256 verified"
    with stage("export") as s:
        model = to_onnx(request, source, work)
        s.detail = f"{len(model.inputs)} inputs, {len(model.outputs)} outputs"
    engine_onnx, inputs, outputs = model.path, model.inputs, model.outputs
    if request.precision == "fp16":
        with stage("precision") as s:
            from .export import graph_signature

            fp16_io = any(
                t.data_type == "FP16" for t in [*(request.inputs or []), *(request.outputs or [])]
            )
            engine_onnx = work / "fp16.onnx"
            report = convert_fp16(model.path, engine_onnx, keep_io_types=not fp16_io)
            if fp16_io:
                import onnx

                graph_in, graph_out = graph_signature(onnx.load(str(engine_onnx)))
                inputs = _with_types(inputs, graph_in)
                outputs = _with_types(outputs, graph_out)
            s.detail = report.detail()
    version_dir = staging / REPOSITORY_DIR / request.model_name / VERSION_DIR
    version_dir.mkdir(parents=True)
    with stage("engine") as s:
        built = build_engine(
            plan, request, engine_onnx, inputs, version_dir, _timing_cache(store, plan, request)
        )
        s.detail = f"{built.engine} {built.file_name} ({built.path.stat().st_size / 1024:.1f} KiB)"
    opt = request.effective_opt_batch_size
    atol, rtol = tolerances(request.precision, request.atol, request.rtol)
    with stage("gate") as s:
        accuracy = check_accuracy(
            built.runner,
            model.path,
            inputs,
            gate_batches(request.max_batch_size, opt),
            precision=request.precision,
            atol=atol,
            rtol=rtol,
        )
        s.detail = f"max abs {accuracy.max_abs_error:.3g}, max rel {accuracy.max_rel_error:.3g}"
    with stage("profile") as s:
        points = profile(built.runner, inputs, request.max_batch_size, opt, request.profile_seconds)
        at_opt = next(p for p in points if p.batch == opt)
        s.detail = f"batch {opt}: p50 {at_opt.p50_ms:.3f} ms, {at_opt.throughput:.0f}/s"
    if built.engine == "onnxruntime":
        _copy_python_backend(version_dir)
    manifest = EngineManifest(
        key=key,
        engine=built.engine,
        precision=request.precision,
        serving_backend=request.serving_backend
        or ("tensorrt_plan" if built.engine == "tensorrt" else "onnxruntime"),
        model_name=request.model_name,
        model_file=built.file_name,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=request.max_batch_size,
        opt_batch_size=opt,
        source_sha256=request.sha256,
        format=request.format,
        gpu_product=request.gpu_product or plan.gpu.name,
        tensorrt_version=built.tensorrt_version,
        compute_capability=built.compute_capability,
        versions=_versions(request, built),
        accuracy=accuracy,
        profile=points,
        stage_seconds=dict(stage.seconds),
        fallback=built.fallback,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    options = ServingOptions(gpu=built.engine == "tensorrt", backend=manifest.serving_backend)
    config = render_model_config(manifest, request.model_name, options)
    (staging / REPOSITORY_DIR / request.model_name / "config.pbtxt").write_text(config)
    (staging / MANIFEST_NAME).write_text(manifest.model_dump_json(by_alias=True, indent=2))
    return manifest


def _with_types(sigs: list[TensorSig], graph: list[TensorSig]) -> list[TensorSig]:
    types = {g.name: g.data_type for g in graph}
    return [s.model_copy(update={"data_type": types.get(s.name, s.data_type)}) for s in sigs]


def build(
    request: BuildRequest, *, reporter: StageReporter | None = None, local_source: bool = False
) -> BuildResult:
    """Build and publish the engine of `request`, or return the complete entry already stored.

    `local_source` lets a plain path or file:// source be read: `modelops dev` and
    `modelops-build MODEL` set it, a build Job (`--request`) never does.
    """
    from .fetch import check_source_allowed

    check_source_allowed(request.source_uri, local_source=local_source)
    stage = _Stages(reporter)
    store = open_store(request.store)
    with stage("plan") as s:
        plan = plan_engine(request)
        key = request.engine_key or compute_key(request, plan)
        digest = key_digest(key)
        hit = store.lookup(digest)
        s.detail = f"{plan.engine}, key {digest[:12]}" + (" (cached)" if hit else "")
    if hit is not None:
        manifest, entry = hit
        return BuildResult(
            summary_of(manifest, _named(request, store, key), cached=True),
            manifest,
            entry,
            cached=True,
        )
    staging = store.stage(digest)
    published = False
    work = Path(tempfile.mkdtemp(prefix="modelops-build-", dir=_work_root()))
    try:
        manifest = _build_into(request, plan, key, store, staging, work, stage, local_source)
        with stage("publish") as s:
            entry = store.publish(digest, staging)
            published = True
            s.detail = store.location(digest)
    finally:
        if not published:
            store.discard(staging)
        shutil.rmtree(work, ignore_errors=True)
    summary = summary_of(manifest, _named(request, store, key), cached=False)
    return BuildResult(summary, manifest, entry, cached=False)


def _named(request: BuildRequest, store: Store, key: str) -> str:
    """The entry's name for status: under the store's name when the operator gave one."""
    return entry_uri(request.store_name or store.uri, key)


def _work_root() -> str | None:
    import os

    return os.environ.get(WORK_DIR_ENV) or None
