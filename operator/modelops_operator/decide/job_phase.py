"""PURE: the one state machine of the source and build Jobs: where a Job of ours stands and what
comes next. Absent -> create it; terminating -> wait; failed -> retry (a new generation or retry
annotation) else fail; running with a stuck pod -> wait, then past the patience like failed;
succeeded with its result -> done, and a success without one counts as a failure.

The callers (decide/source.py, decide/build.py) turn each phase into their own messages and
actions, matching on the phase classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..api import ModelDeployment
from .jobs import JobState, StuckJob, job_state, retry_wanted, stuck_job

T = TypeVar("T")
Job = Mapping[str, Any]


@dataclass(frozen=True)
class Absent:
    """No Job: create one."""


@dataclass(frozen=True)
class Terminating:
    """The Job is being deleted: wait until it is gone."""


@dataclass(frozen=True)
class Running:
    """The Job runs; `stuck` when its pod cannot run yet (still within the patience)."""

    job: Job
    stuck: StuckJob | None = None


@dataclass(frozen=True)
class Retry:
    """The Job failed (or stuck too long) and the spec asks for another try: delete it."""

    job: Job
    stuck: bool = False


@dataclass(frozen=True)
class Failed:
    """The Job failed for good (until the spec changes); `stuck` when its pod never ran."""

    job: Job
    stuck: StuckJob | None = None


@dataclass(frozen=True)
class Done(Generic[T]):
    """The Job succeeded with its result."""

    job: Job
    result: T


JobPhase = Absent | Terminating | Running | Retry | Failed | Done[T]


def job_phase(
    md: ModelDeployment,
    job: Job | None,
    result: T | None,
    *,
    what: str,
    pods: Sequence[Mapping[str, Any]],
    now: datetime,
    patience: float,
) -> JobPhase[T]:
    """Where `job` stands. `result`: what its success left (None: a success without it is a
    failure); `what` names the Job in messages; `pods`: its pods, to tell a stuck one."""
    state = job_state(job)
    if job is None or state == JobState.ABSENT:
        return Absent()
    if state == JobState.TERMINATING:
        return Terminating()
    if state == JobState.SUCCEEDED and result is not None:
        return Done(job, result)
    if state in (JobState.SUCCEEDED, JobState.FAILED):
        return Retry(job) if retry_wanted(md, job) else Failed(job)
    stuck = stuck_job(md, what, pods, now=now, patience=patience)
    if stuck is None or not stuck.expired:
        return Running(job, stuck)
    return Retry(job, stuck=True) if retry_wanted(md, job) else Failed(job, stuck)
