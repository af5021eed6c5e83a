"""The engine: is it in the store, being built, built, or did its build fail."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from modelops_contract.key import engine_key
from modelops_contract.layout import entry_uri
from modelops_contract.manifest import EngineManifest, summary_of
from modelops_contract.request import BuildSummary, parse_summary

from ..api import (
    AccuracyFigures,
    ConditionStatus,
    EngineStatus,
    LatencyFigures,
    ModelDeployment,
    ModelDeploymentSpec,
    ShapeStatus,
    find_condition,
)
from ..render.common import ANNOTATION_GENERATION, ANNOTATION_RETRY
from ..render.job import render_build_job
from ..render.names import build_job_name
from ..settings import Settings
from .clock import parse_time
from .inputs import Observed
from .plan import Action, Apply, Delete, Emit, EventReason

# A succeeded Job whose entry the store still lacks after this long was evicted or published
# elsewhere: build again rather than wait forever.
STORE_GRACE_SECONDS = 60.0
SHORT_REQUEUE_SECONDS = 5.0
_REASON = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def desired_key(spec: ModelDeploymentSpec, settings: Settings) -> str:
    """The engine key of a spec (builder.key.engine_key over the fields that shape the engine)."""
    return engine_key(
        model_sha256=spec.model.source.sha256,
        format=str(spec.model.format),
        engine=str(spec.build.engine),
        precision=str(spec.build.precision),
        max_batch_size=spec.build.max_batch_size,
        opt_batch_size=spec.build.effective_opt_batch_size,
        inputs=[t.to_wire() for t in spec.model.inputs or []],
        gpu_product=spec.build.gpu.product if spec.build.gpu else None,
        tensorrt_version=settings.tensorrt_version,
        shapes=[s.to_wire() for s in spec.build.shapes or []],
    )


class JobState(StrEnum):
    """Where a build Job stands."""

    ABSENT = "Absent"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TERMINATING = "Terminating"


def short_key(key: str) -> str:
    """`sha256:0123456789ab`: enough of a key for messages."""
    return key[:19]


def job_state(job: Mapping[str, Any] | None) -> JobState:
    """The state of a Job from its conditions (falling back to its pod counters)."""
    if job is None:
        return JobState.ABSENT
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return JobState.TERMINATING
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return JobState.SUCCEEDED
        if condition.get("type") == "Failed":
            return JobState.FAILED
    if int(status.get("succeeded") or 0) >= 1:
        return JobState.SUCCEEDED
    backoff = int((job.get("spec") or {}).get("backoffLimit") or 0)
    if int(status.get("failed") or 0) > backoff:
        return JobState.FAILED
    return JobState.RUNNING


def job_summary(job: Mapping[str, Any] | None) -> BuildSummary | None:
    """The builder's summary from the termination message the k8s layer attached."""
    message = ((job or {}).get("status") or {}).get("terminationMessage")
    return parse_summary(message) if isinstance(message, str) else None


def job_failure(job: Mapping[str, Any], summary: BuildSummary | None) -> tuple[str, str]:
    """(reason, message) of a failed build: the builder's own, else the Job's condition."""
    condition: Mapping[str, Any] = next(
        (
            c
            for c in (job.get("status") or {}).get("conditions") or []
            if c.get("type") == "Failed" and c.get("status") == "True"
        ),
        {},
    )
    reason = (summary.reason if summary else None) or condition.get("reason") or "BuildFailed"
    if not _REASON.match(reason):
        reason = "BuildFailed"
    message = (summary.message if summary else None) or condition.get("message") or ""
    name = (job.get("metadata") or {}).get("name", "")
    return reason, f"build Job {name} failed: {message}".rstrip(": ")


def engine_from_summary(summary: BuildSummary) -> EngineStatus:
    """status.engine from a successful build's summary."""
    return EngineStatus(
        key=summary.key or "",
        uri=summary.uri,
        engine=summary.engine,
        tensorrt_version=summary.tensorrt_version,
        compute_capability=summary.compute_capability,
        precision=summary.precision,
        accuracy=AccuracyFigures(
            max_abs_error=summary.accuracy.max_abs_error,
            max_rel_error=summary.accuracy.max_rel_error,
        )
        if summary.accuracy
        else None,
        latency_ms=LatencyFigures(p50=summary.latency_ms.p50, p99=summary.latency_ms.p99)
        if summary.latency_ms
        else None,
        throughput=summary.throughput,
        shapes=[ShapeStatus.from_figures(f) for f in summary.shapes or []] or None,
    )


def engine_from_manifest(manifest: EngineManifest, uri: str | None) -> EngineStatus:
    """status.engine from a store entry (a cache hit: no Job ran for this ModelDeployment)."""
    return engine_from_summary(summary_of(manifest, uri, cached=True))


def store_manifest(entry: Mapping[str, Any] | None, key: str) -> EngineManifest | None:
    """The store entry's manifest when it is valid and for this key, else None."""
    if entry is None:
        return None
    try:
        manifest = EngineManifest.model_validate(entry)
    except ValueError:
        return None
    return manifest if manifest.key == key else None


@dataclass(frozen=True)
class BuildOutcome:
    """The engine's state for this reconcile: condition, status.engine, actions."""

    manifest: EngineManifest | None
    status: ConditionStatus
    reason: str
    message: str
    engine: EngineStatus | None
    failed: bool = False
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    events: tuple[Emit, ...] = field(default=())


def _stale_jobs(observed: Observed, keep: str) -> tuple[Action, ...]:
    return tuple(Delete("batch/v1", "Job", name) for name in sorted(observed.jobs) if name != keep)


def _retry_wanted(md: ModelDeployment, job: Mapping[str, Any]) -> bool:
    """A failed build is retried for a new generation or a new `modelops.dev/retry` value."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    try:
        built_for = int(annotations.get(ANNOTATION_GENERATION, md.metadata.generation))
    except ValueError:
        built_for = 0
    retry = md.metadata.annotations.get(ANNOTATION_RETRY, "")
    return built_for < md.metadata.generation or annotations.get(ANNOTATION_RETRY, "") != retry


def decide_build(
    md: ModelDeployment,
    key: str,
    observed: Observed,
    *,
    needed: bool,
    now: datetime,
    settings: Settings,
) -> BuildOutcome:
    """Find or build the engine `key`; `needed` is False when no new revision needs it."""
    old = md.status
    name = build_job_name(md.metadata.name, key)
    job = observed.jobs.get(name)
    state = job_state(job)
    summary = job_summary(job)
    stale = _stale_jobs(observed, name)
    manifest = store_manifest(observed.store_entry, key)
    was_built = (
        old.engine is not None
        and old.engine.key == key
        and (condition := find_condition(old.conditions, "EngineBuilt")) is not None
        and condition.status == ConditionStatus.TRUE
    )
    if manifest is not None:
        ok = state == JobState.SUCCEEDED and summary is not None and summary.ok
        if ok and summary is not None and summary.key in (None, key):
            engine = engine_from_summary(summary.model_copy(update={"key": key}))
        elif old.engine is not None and old.engine.key == key:
            engine = old.engine
        else:
            engine = engine_from_manifest(manifest, entry_uri(settings.store_name, key))
        how = f"built by Job {name}" if ok else "found in the store"
        message = f"engine {short_key(key)} {how}"
        events = () if was_built else (Emit(EventReason.BUILD_SUCCEEDED, message),)
        return BuildOutcome(
            manifest=manifest,
            status=ConditionStatus.TRUE,
            reason="Built",
            message=message,
            engine=engine,
            failed=False,
            actions=stale,
            requeue_after=None,
            events=events,
        )
    if not needed:
        message = f"engine {short_key(key)} serves the current revision"
        return BuildOutcome(
            manifest=None,
            status=ConditionStatus.TRUE,
            reason="Built",
            message=message,
            engine=old.engine,
            failed=False,
            actions=stale,
        )
    if state == JobState.FAILED or (state == JobState.SUCCEEDED and not (summary and summary.ok)):
        assert job is not None
        if _retry_wanted(md, job):
            message = f"retrying the build of {short_key(key)}: deleting the failed Job {name}"
            actions = (*stale, Delete("batch/v1", "Job", name))
            return BuildOutcome(
                manifest=None,
                status=ConditionStatus.FALSE,
                reason="Building",
                message=message,
                engine=old.engine,
                failed=False,
                actions=actions,
                requeue_after=SHORT_REQUEUE_SECONDS,
            )
        reason, message = job_failure(job, summary)
        prior = find_condition(old.conditions, "EngineBuilt")
        seen = prior is not None and (prior.status, prior.reason, prior.message) == (
            ConditionStatus.FALSE,
            reason,
            message,
        )
        events = () if seen else (Emit(EventReason.BUILD_FAILED, message),)
        return BuildOutcome(
            manifest=None,
            status=ConditionStatus.FALSE,
            reason=reason,
            message=message,
            engine=old.engine,
            failed=True,
            actions=stale,
            events=events,
        )
    if state == JobState.ABSENT:
        message = f"Job {name} is building engine {short_key(key)}"  # the same while it runs
        actions = (*stale, Apply(render_build_job(md, key, settings)))
        return BuildOutcome(
            manifest=None,
            status=ConditionStatus.FALSE,
            reason="Building",
            message=message,
            engine=old.engine,
            failed=False,
            actions=actions,
            requeue_after=settings.reconcile_interval_seconds,
            events=(Emit(EventReason.BUILD_STARTED, message),),
        )
    if state == JobState.SUCCEEDED:
        assert job is not None
        assert summary is not None
        done = parse_time((job.get("status") or {}).get("completionTime"))
        waited = (now - done).total_seconds() if done else 0.0
        if waited > STORE_GRACE_SECONDS:
            message = (
                f"Job {name} succeeded {waited:.0f}s ago but the store has no entry for "
                f"{short_key(key)}: building again"
            )
            actions = (*stale, Delete("batch/v1", "Job", name))
        else:
            message = f"Job {name} succeeded; waiting for the store entry of {short_key(key)}"
            actions = stale
        engine = engine_from_summary(summary.model_copy(update={"key": key}))
        return BuildOutcome(
            manifest=None,
            status=ConditionStatus.FALSE,
            reason="Publishing",
            message=message,
            engine=engine,
            failed=False,
            actions=actions,
            requeue_after=SHORT_REQUEUE_SECONDS,
        )
    if state == JobState.TERMINATING:
        message = f"waiting for the old build Job {name} to be deleted"
        return BuildOutcome(
            manifest=None,
            status=ConditionStatus.FALSE,
            reason="Building",
            message=message,
            engine=old.engine,
            failed=False,
            actions=stale,
            requeue_after=SHORT_REQUEUE_SECONDS,
        )
    message = f"Job {name} is building engine {short_key(key)}"
    return BuildOutcome(
        manifest=None,
        status=ConditionStatus.FALSE,
        reason="Building",
        message=message,
        engine=old.engine,
        failed=False,
        actions=stale,
        requeue_after=settings.reconcile_interval_seconds,
    )
