"""PURE: what the operator reads off its Jobs (source, build, validation): their state, whether a
failed one is retried, and a pod of theirs that is stuck before it runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..api import ConditionStatus, ModelDeployment, find_condition
from ..render.common import ANNOTATION_GENERATION, ANNOTATION_RETRY
from .plan import Emit, EventReason
from .pod_health import stuck


class JobState(StrEnum):
    """Where a Job stands."""

    ABSENT = "Absent"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TERMINATING = "Terminating"


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


def retry_wanted(md: ModelDeployment, job: Mapping[str, Any]) -> bool:
    """A failed Job is retried for a new generation or a new `modelops.dev/retry` value."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    try:
        made_for = int(annotations.get(ANNOTATION_GENERATION, md.metadata.generation))
    except ValueError:
        made_for = 0
    retry = md.metadata.annotations.get(ANNOTATION_RETRY, "")
    return made_for < md.metadata.generation or annotations.get(ANNOTATION_RETRY, "") != retry


@dataclass(frozen=True)
class StuckJob:
    """A running Job whose pod cannot run: the reason, the message, whether it is past the
    operator's patience (the Job then counts as failed), and its Event (once per message)."""

    reason: str
    message: str
    expired: bool
    events: tuple[Emit, ...]


def stuck_job(
    md: ModelDeployment,
    what: str,
    pods: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    patience: float,
) -> StuckJob | None:
    """A stuck pod of a running Job (`what` names the Job in messages), or None."""
    found = stuck(pods)
    if found is None:
        return None
    expired = found.waited(now) > patience
    message = f"{what}: {found.message}"
    if expired:
        message += f" (stuck longer than the {patience:.0f}s the operator waits)"
    # One Event when the pod gets stuck; the failure it turns into has its own (BuildFailed).
    prior = find_condition(md.status.conditions, "EngineBuilt")
    seen = prior is not None and (prior.status, prior.reason) == (
        ConditionStatus.FALSE,
        found.reason,
    )
    events = () if seen or expired else (Emit(EventReason.POD_STUCK, message),)
    return StuckJob(found.reason, message, expired, events)
