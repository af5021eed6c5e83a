"""PURE: the engine of one ModelDeployment, from its source to a verified store entry.

    verified entry in the store?
      yes: proof of source access (status, or a source Job that only hashes the bytes) -> Built
      no:  source Job that keeps the bytes -> build Job (operator's namespace) -> verified entry

A stored engine is never used without the proof (docs/security.md: a cache hit must not hand a
private model's engine to whoever knows its sha256), and never without its MAC (the k8s layer
passes only verified entries; a refused one is rebuilt by decide_build).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ..api import ConditionStatus, ModelDeployment, find_condition
from ..render.names import build_job_name, source_job_name
from ..settings import Settings
from .build import SHORT_REQUEUE_SECONDS, BuildOutcome, decide_build
from .build_results import store_manifest
from .inputs import Observed
from .plan import Delete, Emit, EventReason
from .restage import RESTAGING, next_staging, restaging_message, staging_of
from .source import SourceOutcome, decide_source, recorded_access, stale_source_jobs


def _not_yet(md: ModelDeployment, source: SourceOutcome) -> BuildOutcome:
    """The source step is not done: its reason becomes EngineBuilt's."""
    return BuildOutcome(
        manifest=None,
        status=ConditionStatus.FALSE,
        reason=source.reason,
        message=source.message,
        engine=md.status.engine,
        failed=source.failed,
        actions=source.actions,
        requeue_after=source.requeue_after,
        events=source.events if not source.failed else _failed_once(md, source),
    )


def _failed_once(md: ModelDeployment, source: SourceOutcome) -> tuple[Emit, ...]:
    prior = find_condition(md.status.conditions, "EngineBuilt")
    seen = prior is not None and (prior.reason, prior.message) == (source.reason, source.message)
    return () if seen else (Emit(EventReason.BUILD_FAILED, source.message),)


def _verified_event(md: ModelDeployment, source: SourceOutcome) -> tuple[Emit, ...]:
    """SourceVerified once, when the proof is new."""
    new, old = source.access, md.status.source_access
    if new is None or (old is not None and (old.sha256, old.receipt) == (new.sha256, new.receipt)):
        return ()
    return (
        Emit(
            EventReason.SOURCE_VERIFIED,
            f"the engine server received the source (sha256 {new.sha256[:12]}...) "
            "from this ModelDeployment's source Job: it can read the model",
        ),
    )


def _rerun(outcome: BuildOutcome, observed: Observed, build_job: str) -> BuildOutcome:
    """A build Job deleted to run again (a retry, a refused or lost entry) starts over from the
    source: the engine server dropped the bytes once they were published, or after its TTL."""
    rerun = any(isinstance(a, Delete) and a.name == build_job for a in outcome.actions)
    if not rerun:
        return outcome
    return replace(outcome, actions=(*stale_source_jobs(observed, None), *outcome.actions))


def _restage(
    md: ModelDeployment,
    key: str,
    observed: Observed,
    name: str,
    *,
    now: datetime,
    settings: Settings,
) -> BuildOutcome | None:
    """Build Job `name` lost its staged source (restage.py): its source Job runs again, then
    the failed build Job goes so that a new one starts; None when it lost nothing (or too
    often: it then fails as any build)."""
    limit = settings.build_backoff_limit
    staging = next_staging(observed.build_jobs[name], observed.messages.get(name), limit)
    if staging is None:
        return None
    source = decide_source(
        md, key, observed, keep=True, now=now, settings=settings, staging=staging
    )
    if source.failed:
        return _not_yet(md, source)
    message = restaging_message(name, staging, limit)
    actions = source.actions
    if source.ready:
        actions = (*actions, Delete("batch/v1", "Job", name, settings.operator_namespace))
    prior = find_condition(md.status.conditions, "EngineBuilt")
    seen = prior is not None and (prior.reason, prior.message) == (RESTAGING, message)
    return BuildOutcome(
        manifest=None,
        status=ConditionStatus.FALSE,
        reason=RESTAGING,
        message=message,
        engine=md.status.engine,
        actions=actions,
        requeue_after=source.requeue_after or SHORT_REQUEUE_SECONDS,
        events=(*(() if seen else (Emit(EventReason.SOURCE_RESTAGED, message),)), *source.events),
    )


def decide_engine(
    md: ModelDeployment,
    key: str,
    observed: Observed,
    *,
    needed: bool,
    now: datetime,
    settings: Settings,
) -> BuildOutcome:
    """The engine `key`: proven and found, or being fetched, built, refused, failed."""
    found = store_manifest(observed.store_entry, key)
    proof = recorded_access(md, settings)
    if found is not None or not needed:
        events: tuple[Emit, ...] = ()
        cleanup = stale_source_jobs(observed, None) if proof is not None else ()
        if found is not None and needed and proof is None:
            source = decide_source(md, key, observed, keep=False, now=now, settings=settings)
            if not source.ready:
                return _not_yet(md, source)
            proof, events, cleanup = source.access, _verified_event(md, source), source.actions
        outcome = decide_build(md, key, observed, needed=needed, now=now, settings=settings)
        return replace(
            outcome,
            actions=(*cleanup, *outcome.actions),
            events=(*events, *outcome.events),
            manifest_sha256=observed.store_entry_digest if found is not None else None,
            access=proof or md.status.source_access,
        )
    name = build_job_name(md.metadata.namespace or "default", md.metadata.name, key)
    if name in observed.build_jobs:
        access = proof or md.status.source_access
        restaged = _restage(md, key, observed, name, now=now, settings=settings)
        if restaged is not None:
            return replace(restaged, access=access)
        outcome = decide_build(md, key, observed, needed=True, now=now, settings=settings)
        return replace(_rerun(outcome, observed, name), access=access)
    source = decide_source(md, key, observed, keep=True, now=now, settings=settings)
    if not source.ready:
        return _not_yet(md, source)
    staging = staging_of(observed.jobs.get(source_job_name(md.metadata.name, key)))
    outcome = decide_build(
        md, key, observed, needed=True, now=now, settings=settings, staging=staging
    )
    return replace(
        outcome,
        actions=(*source.actions, *outcome.actions),
        events=(*_verified_event(md, source), *outcome.events),
        access=source.access,
    )
