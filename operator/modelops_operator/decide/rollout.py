"""The revision state machine of one rollout: canary steps, promotion, rollback causes.

A rollout moves a candidate revision from 0 to all desired replicas while the current revision
keeps the rest. New pods come up first (the current revision keeps its replicas until the
candidate is Ready at the step), so capacity never dips during a step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ..api import (
    CanarySpec,
    RolloutProgress,
    RolloutSpec,
    RolloutStrategy,
)
from .analysis import Analysis, Verdict
from .clock import parse_time, rfc3339
from .pod_health import crash_loop, deployment_gave_up, ready_since
from .revisions import RevisionView


def split_canary(desired: int, percent: int) -> tuple[int, int]:
    """(new, old) replicas at a canary step: new = ceil(desired * percent / 100), at least 1."""
    if desired <= 0:
        return 0, 0
    new = min(desired, max(1, math.ceil(desired * percent / 100)))
    return new, desired - new


class Outcome(StrEnum):
    """What a rollout step decided."""

    WAITING = "Waiting"
    STEP_PROMOTED = "StepPromoted"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"


@dataclass(frozen=True)
class StepResult:
    """Replicas of both revisions, the new progress and why."""

    outcome: Outcome
    progress: RolloutProgress
    candidate_replicas: int
    current_replicas: int
    reason: str
    message: str
    requeue_after: float | None


def is_immediate(spec: RolloutSpec, has_current: bool, pinned: bool) -> bool:
    """Recreate, a first revision and a manual rollback replace at once (one 100% step)."""
    return spec.strategy == RolloutStrategy.RECREATE or not has_current or pinned


def steps_of(spec: RolloutSpec, immediate: bool) -> list[int]:
    """The canary percents, or one 100% step."""
    return [100] if immediate else list(spec.canary.steps)


def count_analysis(progress: RolloutProgress, analysis: Analysis) -> RolloutProgress:
    """Progress after one analysis: passes and failures count in a row; inconclusive changes
    neither (it never passes a step and never forgives a failure)."""
    message = analysis.message
    if analysis.verdict == Verdict.PASS:
        return progress.model_copy(
            update={"passes": progress.passes + 1, "failures": 0, "note": message}
        )
    if analysis.verdict == Verdict.FAIL:
        return progress.model_copy(
            update={"passes": 0, "failures": progress.failures + 1, "note": message}
        )
    return progress.model_copy(update={"note": f"inconclusive: {message}"})


def step_rollout(
    *,
    spec: RolloutSpec,
    steps: Sequence[int],
    desired: int,
    current: RevisionView | None,
    candidate: RevisionView | None,
    progress: RolloutProgress,
    analysis: Analysis | None,
    analysis_enabled: bool,
    immediate: bool,
    now: datetime,
) -> StepResult:
    """One look at a rollout: roll back, wait, advance a step, or promote the candidate."""
    canary: CanarySpec = spec.canary
    index = min(progress.step, len(steps) - 1)
    new, old = split_canary(desired, steps[index])
    step_start = parse_time(progress.step_started_at) or now
    ready = candidate is not None and candidate.ready_at(new)
    # Until the candidate is Ready at this step the current revision keeps what it had.
    keep = old if ready or current is None else max(old, min(current.replicas, desired))

    def result(
        outcome: Outcome,
        prog: RolloutProgress,
        reason: str,
        message: str,
        requeue: float | None,
        cand: int = new,
        cur: int = keep,
    ) -> StepResult:
        return StepResult(outcome, prog, cand, cur, reason, message, requeue)

    if candidate is not None and (looping := crash_loop(candidate.pods)):
        return result(Outcome.ROLLED_BACK, progress, "CrashLoop", looping, None)
    waited = (now - step_start).total_seconds()
    deadline = spec.progress_deadline_seconds
    if not ready and (gave_up := deployment_gave_up(candidate)):
        return result(Outcome.ROLLED_BACK, progress, "ProgressDeadlineExceeded", gave_up, None)
    if not ready and waited > deadline:
        have = candidate.ready if candidate else 0
        message = (
            f"{have}/{new} replicas ready after {waited:.0f}s at step {index + 1}/{len(steps)} "
            f"(progressDeadlineSeconds {deadline})"
        )
        return result(Outcome.ROLLED_BACK, progress, "ProgressDeadlineExceeded", message, None)
    counted = count_analysis(progress, analysis) if analysis is not None else progress
    threshold = canary.failure_threshold
    if counted.failures >= threshold:
        message = (
            f"{counted.failures} consecutive failed analyses "
            f"(failureThreshold {threshold}): {counted.note}"
        )
        return result(Outcome.ROLLED_BACK, counted, "AnalysisFailed", message, None)
    where = f"step {index + 1}/{len(steps)} ({steps[index]}%: {new} new, {old} old)"
    if not ready:
        have = candidate.ready if candidate else 0
        return result(
            Outcome.WAITING,
            counted,
            "",
            f"{where}: {have}/{new} ready",
            max(1.0, deadline - waited),
        )
    interval = float(canary.analysis_interval_seconds)
    waiting_for = ""
    if immediate:
        # Recreate, a first revision and a manual rollback are promoted as soon as Ready.
        advance, hold = True, None
    elif analysis is not None or analysis_enabled:
        advance, hold = counted.passes >= threshold, interval
        waiting_for = f"{counted.passes}/{threshold} analyses passed"
    else:
        since = ready_since(candidate, step_start) if candidate else now
        held = (now - since).total_seconds()
        advance = held >= interval
        hold = max(1.0, interval - held)
        waiting_for = f"ready for {held:.0f}s of {interval:.0f}s"
    if not advance:
        return result(Outcome.WAITING, counted, "", f"{where}: {waiting_for}", hold)
    if index + 1 >= len(steps):
        return result(Outcome.PROMOTED, counted, "", f"{where} held", None, new, 0)
    stamp = rfc3339(now)
    nxt = RolloutProgress(step=index + 1, step_started_at=stamp, started_at=progress.started_at)
    next_new, _ = split_canary(desired, steps[index + 1])
    message = f"{where} held; step {index + 2}/{len(steps)} runs {next_new} new replicas"
    return result(Outcome.STEP_PROMOTED, nxt, "", message, interval, next_new, old)
