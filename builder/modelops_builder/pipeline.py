"""build(): model -> verified, exported, built, gated, profiled, sealed and published entry.

Order matters: the engine choice and the key come first, so a complete store entry returns at
once (zero build time, nothing fetched); the store is staged before the download, so a store
that cannot be written fails before any bytes move; the sha256 is checked before any parser
sees the file; nothing is published unless the accuracy gate passed.

A cluster build runs the same stages split in two (docs/security.md): `produce()` in a step
with neither the store nor its key, and publish.py, which sees only what `produce()` wrote.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from modelops_contract.key import engine_key, int8_material, key_digest
from modelops_contract.layout import entry_uri
from modelops_contract.manifest import EngineManifest, summary_of
from modelops_contract.request import BuildRequest, BuildSummary

from .engines import EnginePlan, TimingCache, plan_engine
from .errors import BuildError
from .seal import mac_key_from_env, seal_entry
from .store import Store, open_store

__all__ = ["BuildError", "BuildResult", "StageReporter", "build", "produce", "summary_of"]

log = logging.getLogger(__name__)

STAGES = (
    "plan",
    "fetch",
    "export",
    "precision",
    "reference",
    "engine",
    "gate",
    "profile",
    "publish",
)
WORK_DIR_ENV = "MODELOPS_WORK_DIR"
# The updated TensorRT timing cache, in the build step's output folder (publish.py keeps it).
TIMING_CACHE_OUTPUT = "timing.cache"


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
        calibration=int8_material(request),
    )


def timing_cache_name(plan: EnginePlan, request: BuildRequest) -> str:
    """The store-level name of the TensorRT timing cache of this GPU and TensorRT version."""
    gpu = re.sub(r"[^A-Za-z0-9_.-]+", "_", plan.gpu.name or request.gpu_product or "gpu")
    return f"_timing_cache/{gpu}-trt{plan.tensorrt_version}.cache"


def _timing_cache(store: Store, plan: EnginePlan, request: BuildRequest) -> TimingCache | None:
    if plan.engine != "tensorrt":
        return None
    name = timing_cache_name(plan, request)

    def save(data: bytes) -> None:
        # A lost timing cache only slows the next build: never fail a build over it.
        try:
            store.write_blob(name, data)
        except BuildError as exc:
            log.warning("timing cache not saved: %s", exc)

    return TimingCache(name=name, data=store.read_blob(name), save=save)


def build(
    request: BuildRequest, *, reporter: StageReporter | None = None, local_source: bool = False
) -> BuildResult:
    """Build and publish the engine of `request`, or return the complete entry already stored.

    `local_source` lets a plain path or file:// source be read: `modelops dev` and
    `modelops-build MODEL` set it, a build Job (`--request`) never does. The entry is sealed
    (file digests, and a MAC when MODELOPS_STORE_MAC_KEY is set) before it is published.
    """
    from .fetch import check_source_allowed

    check_source_allowed(request.source_uri, local_source=local_source)
    stage = _Stages(reporter)
    store = open_store(request.store)
    mac_key = mac_key_from_env()
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
    try:
        cache = _timing_cache(store, plan, request)
        _run_stages(request, plan, key, staging, cache, stage, allow_local=local_source)
        with stage("publish") as s:
            raw = seal_entry(staging, key=key, model_name=request.model_name, mac_key=mac_key)
            manifest = EngineManifest.model_validate_json(raw)
            entry = store.publish(digest, staging)
            published = True
            s.detail = store.location(digest)
    finally:
        if not published:
            store.discard(staging)
    summary = summary_of(manifest, _named(request, store, key), cached=False)
    return BuildResult(summary, manifest, entry, cached=False)


def produce(
    request: BuildRequest,
    out: Path,
    *,
    timing_cache: Path | None = None,
    reporter: StageReporter | None = None,
) -> EngineManifest:
    """The build Job's build step: every stage into `out`, nothing published, no store opened.

    The source comes from `request.staged_source` (the engine server); the publishing step
    (publish.py) later seals and publishes what `out` holds. `timing_cache`: a folder holding
    the store's TensorRT timing caches (by their store-level names) to start from; the updated
    one is written to `out` for the publisher to keep.
    """
    from .fetch import check_source_allowed

    check_source_allowed(request.source_uri, local_source=False)
    stage = _Stages(reporter)
    with stage("plan") as s:
        plan = plan_engine(request)
        key = request.engine_key or compute_key(request, plan)
        s.detail = f"{plan.engine}, key {key_digest(key)[:12]}"
    out.mkdir(parents=True, exist_ok=True)
    cache = None
    if plan.engine == "tensorrt":
        # The operator names a cluster build's cache (its tenant's); else the GPU's and version's.
        name = request.timing_cache or timing_cache_name(plan, request)
        found = timing_cache / Path(name).name if timing_cache is not None else None
        data = found.read_bytes() if found is not None and found.is_file() else None
        target = out / TIMING_CACHE_OUTPUT
        cache = TimingCache(name=name, data=data, save=lambda b: _write(target, b))
    return _run_stages(request, plan, key, out, cache, stage)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _run_stages(
    request: BuildRequest,
    plan: EnginePlan,
    key: str,
    staging: Path,
    cache: TimingCache | None,
    stage: _Stages,
    *,
    allow_local: bool = False,
) -> EngineManifest:
    # Heavy modules load here, not at the top: a cache hit needs none of them.
    from .steps import BuildInputs, build_entry

    work = Path(tempfile.mkdtemp(prefix="modelops-build-", dir=_work_root()))
    try:
        job = BuildInputs(request, plan, key, staging, work, cache, allow_local)
        return build_entry(job, stage)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _named(request: BuildRequest, store: Store, key: str) -> str:
    """The entry's name for status: under the store's name when the operator gave one."""
    return entry_uri(request.store_name or store.uri, key)


def _work_root() -> str | None:
    import os

    return os.environ.get(WORK_DIR_ENV) or None
