"""PURE: the source step. Before a ModelDeployment gets an engine, it proves it can read the
model: its source Job, in its own namespace with its own credentials, streams the source to the
engine server, whose receipt (an HMAC only the transfer key makes, naming the sha256 and this
ModelDeployment's uid) the operator checks here. A store hit needs the proof too (the bytes are
then only hashed); a build needs them kept for the build Job.

The receipt is what counts, never the Job's word: a tenant who controls its namespace can make
any Job say "ok", but cannot make a receipt without sending bytes with the right sha256.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelops_contract.staging import StageSummary, parse_stage_summary

from ..api import ModelDeployment, SourceAccess
from ..render.build_request import build_datasets
from ..render.common import LABEL_COMPONENT
from ..render.names import source_job_name
from ..render.source_job import ANNOTATION_KEEP, render_source_job
from ..render.tokens import receipt_kept, receipt_valid
from ..settings import Settings
from .clock import rfc3339
from .inputs import Observed
from .job_phase import Absent, Done, Failed, Retry, Running, Terminating, job_phase
from .jobs import StuckJob
from .plan import Action, Apply, Delete, Emit
from .restage import staging_of

SHORT_REQUEUE_SECONDS = 5.0


@dataclass(frozen=True)
class SourceOutcome:
    """Where the source step stands: the proof (ready), or why not yet (or never)."""

    access: SourceAccess | None
    reason: str = ""
    message: str = ""
    failed: bool = False
    actions: tuple[Action, ...] = ()
    events: tuple[Emit, ...] = field(default=())
    requeue_after: float | None = None

    @property
    def ready(self) -> bool:
        """True when the proof is in hand."""
        return self.access is not None


def recorded_access(md: ModelDeployment, settings: Settings) -> SourceAccess | None:
    """status.sourceAccess when it still proves access to today's source for this uid."""
    access = md.status.source_access
    sha = md.spec.model.source.sha256
    if access is None or access.sha256 != sha:
        return None
    return access if receipt_valid(settings, access.receipt, sha, md.metadata.uid or "") else None


def source_jobs(observed: Observed) -> list[str]:
    """Names of the observed source Jobs."""
    return sorted(n for n, j in observed.jobs.items() if _component(j) == "source")


def _component(job: Mapping[str, Any]) -> str:
    return str(((job.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT, ""))


def _summary(message: str | None) -> StageSummary | None:
    return parse_stage_summary(message) if message is not None else None


def source_proof(
    md: ModelDeployment, summary: StageSummary | None, settings: Settings, keep: bool, now: str
) -> SourceAccess | None:
    """The proof a source Job's summary gives: the model's receipt (kept for a build), and for a
    build each of its data sets' kept receipts; None when any is missing or not the server's."""
    sha, uid = md.spec.model.source.sha256, md.metadata.uid or ""
    if summary is None or not summary.ok or not summary.receipt or summary.sha256 != sha:
        return None
    valid = (
        receipt_kept(settings, summary.receipt, sha, uid, True)
        if keep
        else receipt_valid(settings, summary.receipt, sha, uid)
    )
    # A build's data sets must be on the engine server too, each sent by this ModelDeployment.
    receipts = summary.dataset_receipts or {}
    for data in build_datasets(md.spec) if keep else []:
        valid = valid and receipt_kept(settings, receipts.get(data.sha256), data.sha256, uid, True)
    return SourceAccess(sha256=sha, receipt=summary.receipt, time=now) if valid else None


def stale_source_jobs(observed: Observed, keep: str | None) -> tuple[Action, ...]:
    """Deletes of the source Jobs other than `keep` (all of them for None)."""
    return tuple(Delete("batch/v1", "Job", n) for n in source_jobs(observed) if n != keep)


def decide_source(
    md: ModelDeployment,
    key: str,
    observed: Observed,
    *,
    keep: bool,
    now: datetime,
    settings: Settings,
    staging: int = 0,
) -> SourceOutcome:
    """Run (or read) the source Job of `key`: `keep` when a build will read the bytes;
    `staging`: the staging wanted (a source Job of an earlier one is replaced: restage.py)."""
    name = source_job_name(md.metadata.name, key)
    job = observed.jobs.get(name)
    stale = stale_source_jobs(observed, name)
    summary = _summary(observed.messages.get(name)) if job is not None else None
    proof = source_proof(md, summary, settings, keep, rfc3339(now))
    why = "for the build" if keep else "to prove this ModelDeployment can read it"
    phase = job_phase(
        md,
        job,
        proof,
        what=f"source Job {name}",
        pods=observed.job_pods.get(name, ()),
        now=now,
        patience=settings.stuck_seconds,
    )
    delete = Delete("batch/v1", "Job", name)
    if keep and job is not None and not isinstance(phase, Done | Terminating | Absent):
        made = ((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_KEEP)
        if made != "true":
            # It only proves access; a build needs the bytes kept: send them again.
            message = f"the source is needed {why}: replacing Job {name}"
            return _waiting(message, (*stale, delete), SHORT_REQUEUE_SECONDS)
    if job is not None and staging_of(job) < staging and not isinstance(phase, Terminating):
        message = f"the source is needed again {why}: replacing Job {name}"
        return _waiting(message, (*stale, delete), SHORT_REQUEUE_SECONDS)
    match phase:
        case Done(result=access):
            return SourceOutcome(access=access, actions=stale)
        case Absent():
            message = f"Job {name} is fetching the source {why}"  # the same while it runs
            manifest = render_source_job(md, key, settings, keep=keep, now=now, staging=staging)
            return _waiting(message, (*stale, Apply(manifest)), settings.reconcile_interval_seconds)
        case Terminating():
            message = f"waiting for the old source Job {name} to be deleted"
            return _waiting(message, stale, SHORT_REQUEUE_SECONDS)
        case Retry(stuck=stuck):
            how = "the stuck " if stuck else ""
            message = f"fetching the source again: deleting {how}Job {name}"
            return _waiting(message, (*stale, delete), SHORT_REQUEUE_SECONDS)
        case Failed(stuck=StuckJob(reason=reason, message=message)):
            return SourceOutcome(None, reason, message, failed=True, actions=stale)
        case Failed():
            reason = (summary.reason if summary and not summary.ok else None) or "SourceUnreadable"
            detail = (summary.message if summary else None) or "it left no receipt of the source"
            return SourceOutcome(
                access=None,
                reason=reason,
                message=f"source Job {name} failed: {detail}",
                failed=True,
                actions=stale,
            )
        case Running(stuck=StuckJob(reason=reason, message=message, events=events)):
            return SourceOutcome(
                None,
                reason,
                message,
                actions=stale,
                events=events,
                requeue_after=settings.reconcile_interval_seconds,
            )
        case Running():
            message = f"Job {name} is fetching the source {why}"
            return _waiting(message, stale, settings.reconcile_interval_seconds)


def _waiting(message: str, actions: tuple[Action, ...], requeue: float) -> SourceOutcome:
    reason = "FetchingSource"
    return SourceOutcome(None, reason, message, actions=actions, requeue_after=requeue)
