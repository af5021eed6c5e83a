"""The build Job (in the operator's namespace): is the engine in the store, being built, built,
refused, stuck, or did its build fail."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelops_contract.key import engine_key, int8_material
from modelops_contract.layout import entry_uri
from modelops_contract.manifest import EngineManifest
from modelops_contract.request import BuildSummary

from ..api import (
    ConditionStatus,
    EngineStatus,
    ModelDeployment,
    ModelDeploymentSpec,
    SourceAccess,
    find_condition,
)
from ..render.build_request import build_request
from ..render.job import ANNOTATION_REPLACES, render_build_job
from ..render.names import build_job_name
from ..settings import Settings
from .build_queue import QUEUED, Waiting, queue_position
from .build_results import (
    engine_from_manifest,
    engine_from_summary,
    job_failure,
    job_summary,
    store_manifest,
)
from .clock import parse_time, rfc3339
from .inputs import Observed
from .job_phase import Absent, Done, Failed, Retry, Running, Terminating, job_phase
from .jobs import JobState, StuckJob, job_state
from .plan import Action, Apply, Delete, Emit, EventReason

# A succeeded Job whose entry the store still lacks after this long was evicted or published
# elsewhere: build again rather than wait forever.
STORE_GRACE_SECONDS = 60.0
SHORT_REQUEUE_SECONDS = 5.0
# A queued build looks again this often (a finished build frees its slot).
QUEUE_RECHECK_SECONDS = 10.0


def desired_key(spec: ModelDeploymentSpec, settings: Settings) -> str:
    """The engine key of a spec (modelops_contract.key.engine_key over the fields that shape the
    engine); the builder's side of the same mapping is modelops_builder.pipeline.compute_key."""
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
        calibration=int8_material(build_request(spec, settings, engine_key=None)),
    )


def short_key(key: str) -> str:
    """`sha256:0123456789ab`: enough of a key for messages."""
    return key[:19]


@dataclass(frozen=True)
class BuildOutcome:
    """The engine's state for this reconcile: condition, status.engine, actions.

    manifest_sha256: the digest of the verified engine.json (the revision's pods are pinned to
    it); access: the proof that this ModelDeployment can read its source (status.sourceAccess).
    """

    manifest: EngineManifest | None
    status: ConditionStatus
    reason: str
    message: str
    engine: EngineStatus | None
    failed: bool = False
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    events: tuple[Emit, ...] = field(default=())
    manifest_sha256: str | None = None
    access: SourceAccess | None = None


def _stale_jobs(observed: Observed, keep: str, namespace: str) -> tuple[Action, ...]:
    return tuple(
        Delete("batch/v1", "Job", name, namespace)
        for name in sorted(observed.build_jobs)
        if name != keep
    )


@dataclass(frozen=True)
class _Look:
    """One build Job as this reconcile sees it."""

    name: str
    namespace: str
    job: Mapping[str, Any] | None
    state: JobState
    summary: BuildSummary | None
    stale: tuple[Action, ...]


def _look(md: ModelDeployment, key: str, observed: Observed, settings: Settings) -> _Look:
    namespace = settings.operator_namespace
    name = build_job_name(md.metadata.namespace or "default", md.metadata.name, key)
    job = observed.build_jobs.get(name)
    stale = _stale_jobs(observed, name, namespace)
    summary = job_summary(observed.messages.get(name)) if job is not None else None
    return _Look(name, namespace, job, job_state(job), summary, stale)


def _queued(
    md: ModelDeployment, observed: Observed, now: datetime, settings: Settings
) -> int | None:
    """This build's place in the build queue, or None when it may start now."""
    built = find_condition(md.status.conditions, "EngineBuilt")
    since = rfc3339(now)
    if built is not None and built.reason == QUEUED and built.last_transition_time:
        since = built.last_transition_time
    me = Waiting(since, md.metadata.namespace or "default", md.metadata.name)
    return queue_position(
        me, observed.build_load, settings.build_max_concurrent, settings.build_max_per_namespace
    )


def _waiting(
    md: ModelDeployment, look: _Look, reason: str, message: str, **extra: Any
) -> BuildOutcome:
    fields: dict[str, Any] = {"actions": look.stale, "requeue_after": SHORT_REQUEUE_SECONDS}
    return BuildOutcome(
        manifest=None,
        status=ConditionStatus.FALSE,
        reason=reason,
        message=message,
        engine=md.status.engine,
        **(fields | extra),
    )


def _failure(md: ModelDeployment, look: _Look, reason: str, message: str) -> BuildOutcome:
    """Failed with this reason; the BuildFailed Event once per (reason, message)."""
    prior = find_condition(md.status.conditions, "EngineBuilt")
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
        engine=md.status.engine,
        failed=True,
        actions=look.stale,
        events=events,
    )


def _found(
    md: ModelDeployment, key: str, look: _Look, manifest: EngineManifest, settings: Settings
) -> BuildOutcome:
    """The store holds a verified entry: EngineBuilt, with the figures of the best source."""
    old, summary = md.status, look.summary
    was_built = (
        old.engine is not None
        and old.engine.key == key
        and (condition := find_condition(old.conditions, "EngineBuilt")) is not None
        and condition.status == ConditionStatus.TRUE
    )
    ok = look.state == JobState.SUCCEEDED and summary is not None and summary.ok
    if ok and summary is not None and summary.key in (None, key):
        engine = engine_from_summary(summary.model_copy(update={"key": key}))
    elif old.engine is not None and old.engine.key == key:
        engine = old.engine
    else:
        engine = engine_from_manifest(manifest, entry_uri(settings.store_name, key))
    how = f"built by Job {look.name}" if ok else "found in the store"
    message = f"engine {short_key(key)} {how}"
    events = () if was_built else (Emit(EventReason.BUILD_SUCCEEDED, message),)
    return BuildOutcome(
        manifest=manifest,
        status=ConditionStatus.TRUE,
        reason="Built",
        message=message,
        engine=engine,
        actions=look.stale,
        events=events,
    )


def _refused(md: ModelDeployment, key: str, look: _Look, refusal: str) -> BuildOutcome | None:
    """A finished build while the store's entry at the key is refused: rebuild once, then fail."""
    if look.state != JobState.SUCCEEDED or look.job is None:
        return None
    annotations = (look.job.get("metadata") or {}).get("annotations") or {}
    if annotations.get(ANNOTATION_REPLACES):
        return _failure(
            md,
            look,
            "EngineRefused",
            f"the entry Job {look.name} published for {short_key(key)} is refused too "
            f"({refusal}): the build Jobs and the operator must share the store's key",
        )
    delete = Delete("batch/v1", "Job", look.name, look.namespace)
    message = f"engine {short_key(key)} in the store is refused ({refusal}): rebuilding it"
    return _waiting(md, look, "Rebuilding", message, actions=(*look.stale, delete))


def decide_build(
    md: ModelDeployment,
    key: str,
    observed: Observed,
    *,
    needed: bool,
    now: datetime,
    settings: Settings,
    staging: int = 0,
) -> BuildOutcome:
    """Find the engine `key` in the store, or build it in the operator's namespace; `needed` is
    False when no new revision needs it; `staging`: which staging of the source a new build Job
    reads (its source Job's)."""
    look = _look(md, key, observed, settings)
    manifest = store_manifest(observed.store_entry, key)
    if manifest is not None:
        return _found(md, key, look, manifest, settings)
    if not needed:
        message = f"engine {short_key(key)} serves the current revision"
        return BuildOutcome(
            manifest=None,
            status=ConditionStatus.TRUE,
            reason="Built",
            message=message,
            engine=md.status.engine,
            actions=look.stale,
        )
    refusal = observed.store_refusal
    if refusal and (outcome := _refused(md, key, look, refusal)) is not None:
        return outcome
    name = look.name
    usable = look.summary if look.summary is not None and look.summary.ok else None
    phase = job_phase(
        md,
        look.job,
        usable,
        what=f"build Job {name}",
        pods=observed.job_pods.get(name, ()),
        now=now,
        patience=settings.stuck_seconds,
    )
    delete = Delete("batch/v1", "Job", name, look.namespace)
    building = f"Job {settings.operator_namespace}/{name} is building engine {short_key(key)}"
    match phase:
        case Absent() if (position := _queued(md, observed, now, settings)) is not None:
            load = observed.build_load
            message = (
                f"engine {short_key(key)} waits for a build slot: position {position} "
                f"({sum(load.running.values())} builds running; at most "
                f"{settings.build_max_concurrent or 'any'} in all, "
                f"{settings.build_max_per_namespace or 'any'} per namespace)"
            )
            return _waiting(md, look, QUEUED, message, requeue_after=QUEUE_RECHECK_SECONDS)
        case Absent():
            replaces = observed.store_entry_digest if refusal else None
            job_manifest = render_build_job(md, key, settings, replaces=replaces, staging=staging)
            # The same message while it runs: no status write between the two.
            events = [Emit(EventReason.BUILD_STARTED, building)]
            if refusal:
                events.insert(0, Emit(EventReason.ENGINE_REFUSED, f"{short_key(key)}: {refusal}"))
            return _waiting(
                md,
                look,
                "Building",
                building,
                actions=(*look.stale, Apply(job_manifest)),
                requeue_after=settings.reconcile_interval_seconds,
                events=tuple(events),
            )
        case Terminating():
            message = f"waiting for the old build Job {name} to be deleted"
            return _waiting(md, look, "Building", message)
        case Retry(stuck=stuck):
            how = "stuck" if stuck else "failed"
            message = f"retrying the build of {short_key(key)}: deleting the {how} Job {name}"
            return _waiting(md, look, "Building", message, actions=(*look.stale, delete))
        case Failed(stuck=StuckJob(reason=reason, message=message)):
            return _failure(md, look, reason, message)
        case Failed(job=job):
            return _failure(md, look, *job_failure(job, look.summary))
        case Done(job=job, result=summary):
            return _published(md, key, look, job, summary, now)
        case Running(stuck=StuckJob(reason=reason, message=message, events=events)):
            return _waiting(
                md,
                look,
                reason,
                message,
                requeue_after=settings.reconcile_interval_seconds,
                events=events,
            )
        case Running():
            return _waiting(
                md, look, "Building", building, requeue_after=settings.reconcile_interval_seconds
            )


def _published(
    md: ModelDeployment,
    key: str,
    look: _Look,
    job: Mapping[str, Any],
    summary: BuildSummary,
    now: datetime,
) -> BuildOutcome:
    """The build succeeded: wait for its store entry, or build again when it never comes."""
    done = parse_time((job.get("status") or {}).get("completionTime"))
    waited = (now - done).total_seconds() if done else 0.0
    engine = engine_from_summary(summary.model_copy(update={"key": key}))
    if waited > STORE_GRACE_SECONDS:
        message = (
            f"Job {look.name} succeeded {waited:.0f}s ago but the store has no entry for "
            f"{short_key(key)}: building again"
        )
        actions = (*look.stale, Delete("batch/v1", "Job", look.name, look.namespace))
        return _waiting(md, look, "Publishing", message, actions=actions, engine=engine)
    message = f"Job {look.name} succeeded; waiting for the store entry of {short_key(key)}"
    return _waiting(md, look, "Publishing", message, engine=engine)
