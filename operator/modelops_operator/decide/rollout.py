"""The revision state machine of one rollout: canary steps, validation, promotion, rollback.

A rollout moves a candidate revision from 0 to all desired replicas while the current revision
keeps the rest. New pods come up first (the current revision keeps its replicas until the
candidate is Ready at the step), so capacity never dips during a step. A candidate gets client
requests only after its validation run passed; from then on each step's analyses decide. One
look goes, in order: the pods' health (a crash loop, the progress deadline), the validation
gate, the analyses counted so far, readiness at the step, and whether the step held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from ..api import NoTrafficPolicy, RolloutProgress, RolloutSpec
from .analysis import Analysis, Verdict
from .canary_steps import split_canary
from .clock import parse_time, rfc3339
from .pod_health import crash_loop, deployment_gave_up, ready_since
from .revisions import RevisionView
from .validation import ValidationState, ValidationView


class Outcome(StrEnum):
    """What a rollout step decided."""

    WAITING = "Waiting"
    STEP_PROMOTED = "StepPromoted"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"


@dataclass(frozen=True)
class StepInput:
    """Everything one look at a rollout depends on."""

    spec: RolloutSpec
    steps: Sequence[int]
    desired: int
    current: RevisionView | None
    candidate: RevisionView | None
    progress: RolloutProgress
    analysis: Analysis | None
    analysis_enabled: bool
    immediate: bool
    validation: ValidationView
    now: datetime
    hold: str = ""  # why the candidate may not leave its step (paused, a manual weight)


@dataclass(frozen=True)
class StepResult:
    """Replicas of both revisions, the candidate's share of requests, the new progress, why."""

    outcome: Outcome
    progress: RolloutProgress
    candidate_replicas: int
    current_replicas: int
    reason: str
    message: str
    requeue_after: float | None
    canary_weight: int = 0
    start_validation: bool = False


def steps_of(spec: RolloutSpec, immediate: bool) -> list[int]:
    """The canary percents, or one 100% step."""
    return [100] if immediate else list(spec.canary.steps)


def count_analysis(
    progress: RolloutProgress, analysis: Analysis, policy: NoTrafficPolicy
) -> RolloutProgress:
    """Progress after one analysis. Passes and failures count in a row; inconclusive changes
    neither, except that an interval without any client request passes a validated candidate
    that has not failed when the policy is Promote (its validation run is then the evidence)."""
    message = analysis.message
    # Silence after a failure proves nothing: it never forgives one.
    no_traffic_pass = (
        analysis.no_traffic
        and policy == NoTrafficPolicy.PROMOTE
        and progress.validated
        and progress.failures == 0
    )
    if analysis.verdict == Verdict.PASS or no_traffic_pass:
        if no_traffic_pass:
            message = f"no client traffic: passed on its validation run ({message})"
        return progress.model_copy(
            update={"passes": progress.passes + 1, "failures": 0, "note": message}
        )
    if analysis.verdict == Verdict.FAIL:
        return progress.model_copy(
            update={"passes": 0, "failures": progress.failures + 1, "note": message}
        )
    return progress.model_copy(update={"note": f"inconclusive: {message}"})


@dataclass(frozen=True)
class _Look:
    """What one look computed before deciding."""

    index: int
    new: int
    old: int
    keep: int
    ready: bool
    step_start: datetime
    waited: float
    where: str


def _look(given: StepInput) -> _Look:
    index = min(given.progress.step, len(given.steps) - 1)
    new, old = split_canary(given.desired, given.steps[index])
    ready = given.candidate is not None and given.candidate.ready_at(new)
    current = given.current
    # Until the candidate is Ready at this step, and validated (it takes requests only then),
    # the current revision keeps what it had.
    taking = ready and given.progress.validated
    keep = old if taking or current is None else max(old, min(current.replicas, given.desired))
    step_start = parse_time(given.progress.step_started_at) or given.now
    where = f"step {index + 1}/{len(given.steps)} ({given.steps[index]}%: {new} new, {old} old)"
    waited = (given.now - step_start).total_seconds()
    return _Look(index, new, old, keep, ready, step_start, waited, where)


def _unhealthy(given: StepInput, look: _Look) -> tuple[str, str] | None:
    """(reason, message) when the candidate's pods cannot make it: roll back."""
    candidate = given.candidate
    if candidate is not None and (looping := crash_loop(candidate.pods)):
        return "CrashLoop", looping
    if look.ready:
        return None
    if gave_up := deployment_gave_up(candidate):
        return "ProgressDeadlineExceeded", gave_up
    deadline = given.spec.progress_deadline_seconds
    if look.waited > deadline:
        have = candidate.ready if candidate else 0
        return "ProgressDeadlineExceeded", (
            f"{have}/{look.new} replicas ready after {look.waited:.0f}s at step "
            f"{look.index + 1}/{len(given.steps)} (progressDeadlineSeconds {deadline})"
        )
    return None


def _weight_while_not_ready(given: StepInput, look: _Look) -> int:
    """The candidate's share while it is not at this step's replicas: the step's own when it
    has that many ready pods (it is shrinking), else the previous step's."""
    if not given.progress.validated:
        return 0
    if given.candidate is not None and given.candidate.ready >= look.new:
        return given.steps[look.index]
    return given.steps[look.index - 1] if look.index > 0 else 0


def step_rollout(given: StepInput) -> StepResult:
    """One look at a rollout: roll back, wait, advance a step, or promote the candidate."""
    look = _look(given)
    progress = given.progress

    def result(
        outcome: Outcome,
        prog: RolloutProgress,
        reason: str,
        message: str,
        requeue: float | None,
        weight: int = 0,
        *,
        start_validation: bool = False,
        current_replicas: int | None = None,
    ) -> StepResult:
        keep = look.keep if current_replicas is None else current_replicas
        return StepResult(
            outcome, prog, look.new, keep, reason, message, requeue, weight, start_validation
        )

    if unhealthy := _unhealthy(given, look):
        return result(Outcome.ROLLED_BACK, progress, *unhealthy, None)
    if look.ready and not progress.validated:
        state = given.validation.state
        if state == ValidationState.FAILED:
            message = f"validation failed: {given.validation.message}"
            return result(Outcome.ROLLED_BACK, progress, "ValidationFailed", message, None)
        if state != ValidationState.PASSED:
            note = f"{look.where}: validating before any client request"
            start = state == ValidationState.ABSENT
            return result(Outcome.WAITING, progress, "", note, 2.0, 0, start_validation=start)
        # Client traffic starts now: the step's window counts from here.
        progress = progress.model_copy(
            update={"validated": True, "step_started_at": rfc3339(given.now), "passes": 0}
        )
        look = replace(look, step_start=given.now, waited=0.0, keep=look.old)
    counted = progress
    if given.analysis is not None and progress.validated:
        # Before the candidate got traffic, an analysis of it says nothing.
        counted = count_analysis(progress, given.analysis, given.spec.no_traffic)
    threshold = given.spec.canary.failure_threshold
    if counted.failures >= threshold:
        message = (
            f"{counted.failures} consecutive failed analyses "
            f"(failureThreshold {threshold}): {counted.note}"
        )
        return result(Outcome.ROLLED_BACK, counted, "AnalysisFailed", message, None)
    if not look.ready:
        have = given.candidate.ready if given.candidate else 0
        deadline_in = max(1.0, given.spec.progress_deadline_seconds - look.waited)
        message = f"{look.where}: {have}/{look.new} ready"
        weight = _weight_while_not_ready(given, look)
        return result(Outcome.WAITING, counted, "", message, deadline_in, weight)
    weight = given.steps[look.index]
    advance, hold, waiting_for = _held(given, look, counted)
    if not advance:
        message = f"{look.where}: {waiting_for}"
        return result(Outcome.WAITING, counted, "", message, hold, weight)
    if look.index + 1 >= len(given.steps):
        message = f"{look.where} held"
        return result(Outcome.PROMOTED, counted, "", message, None, 100, current_replicas=0)
    return _next_step(given, look, counted, weight)


def _held(
    given: StepInput, look: _Look, counted: RolloutProgress
) -> tuple[bool, float | None, str]:
    """(advance, seconds to look again, what the step waits for)."""
    interval = float(given.spec.canary.analysis_interval_seconds)
    threshold = given.spec.canary.failure_threshold
    if given.immediate:
        # Recreate, a first revision, a manual rollback and a cut-over go at once when ready.
        return True, None, ""
    if given.hold:
        # Analyses still count (and can roll back); only leaving the step waits.
        return False, interval, f"{given.hold}: resume, promote or abort to go on"
    if given.analysis is not None or given.analysis_enabled:
        waiting_for = f"{counted.passes}/{threshold} analyses passed"
        return counted.passes >= threshold, interval, waiting_for
    since = ready_since(given.candidate, look.step_start) if given.candidate else given.now
    held = (given.now - since).total_seconds()
    waiting_for = f"ready for {held:.0f}s of {interval:.0f}s"
    return held >= interval, max(1.0, interval - held), waiting_for


def _next_step(given: StepInput, look: _Look, counted: RolloutProgress, weight: int) -> StepResult:
    stamp = rfc3339(given.now)
    progress = RolloutProgress(
        step=look.index + 1,
        step_started_at=stamp,
        started_at=given.progress.started_at,
        validated=counted.validated,
        cut_over=counted.cut_over,
    )
    next_new, _ = split_canary(given.desired, given.steps[look.index + 1])
    message = (
        f"{look.where} held; step {look.index + 2}/{len(given.steps)} runs {next_new} new replicas"
    )
    interval = float(given.spec.canary.analysis_interval_seconds)
    return StepResult(
        Outcome.STEP_PROMOTED, progress, next_new, look.old, "", message, interval, weight
    )
