"""Canary analysis, consecutive pass/fail counting, and pod health checks (PURE).

Inputs are interval figures (from the scraper or Prometheus), the CanarySpec and plain dicts of
pod/Deployment objects as the Kubernetes API returns them; `now` is always a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from ..api.spec import CanarySpec
from ..metrics.rates import IntervalFigures

CRASH_LOOP_RESTARTS = 3


class Verdict(StrEnum):
    """Outcome of one analysis."""

    PASS = "pass"  # noqa: S105 - a verdict, not a credential
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Decision(StrEnum):
    """What the rollout does after counting an analysis."""

    CONTINUE = "Continue"
    PROMOTE = "Promote"
    ROLLBACK = "Rollback"


class RollbackReason(StrEnum):
    """Reasons (condition/history/Event reasons) for rolling a candidate back."""

    ANALYSIS_FAILED = "AnalysisFailed"
    PROGRESS_DEADLINE = "ProgressDeadlineExceeded"
    CRASH_LOOP = "CrashLoop"


@dataclass(frozen=True)
class Analysis:
    """One analysis: the verdict, the failed gates (each naming threshold and figures), a note."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    note: str | None = None

    @property
    def message(self) -> str:
        """Reasons and note in one line, for status and Events."""
        parts = list(self.reasons) + ([self.note] if self.note else [])
        return "; ".join(parts) if parts else self.verdict.value


@dataclass(frozen=True)
class Counters:
    """Consecutive conclusive passes and failures at the current canary step."""

    passes: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Advance:
    """Counters after an analysis and what to do now."""

    counters: Counters
    decision: Decision
    message: str


@dataclass(frozen=True)
class RollbackCause:
    """Why a candidate must be rolled back, with the figures that show it."""

    reason: RollbackReason
    message: str


def analyse(figures: IntervalFigures | None, spec: CanarySpec, min_requests: int = 1) -> Analysis:
    """Judge one interval of canary figures against the spec's gates.

    No figures or fewer than `min_requests` requests is inconclusive, never a pass and never a
    rollback on its own. A failed error gate fails even when p99 is unknown; a requested p99
    gate without a p99 figure (summary latencies off) leaves a clean interval inconclusive.
    """
    if figures is None:
        return Analysis(Verdict.INCONCLUSIVE, note="no metrics from the canary pods")
    if figures.requests < max(min_requests, 1):
        return Analysis(
            Verdict.INCONCLUSIVE,
            note=f"canary received no traffic in the last {figures.seconds:.0f}s"
            if figures.requests == 0
            else f"canary received {figures.requests:.0f} requests in {figures.seconds:.0f}s, "
            f"fewer than the {min_requests} needed to judge",
        )
    reasons: list[str] = []
    error_rate = figures.error_rate or 0.0
    if error_rate > spec.max_error_rate:
        by_reason = ", ".join(
            f"{r} {v:.0f}" for r, v in sorted(figures.failures_by_reason.items()) if v > 0
        )
        reasons.append(
            f"errorRate {error_rate:.3g} > maxErrorRate {spec.max_error_rate:g} "
            f"({figures.failures:.0f} of {figures.requests:.0f} requests failed: {by_reason})"
        )
    limit = spec.max_p99_latency_ms
    if limit is not None and figures.p99_ms is not None and figures.p99_ms > limit:
        reasons.append(f"p99LatencyMs {figures.p99_ms:.3g} > maxP99LatencyMs {limit:g}")
    if reasons:
        return Analysis(Verdict.FAIL, tuple(reasons))
    if limit is not None and figures.p99_ms is None:
        return Analysis(
            Verdict.INCONCLUSIVE,
            note="no p99 latency from Triton (summary latencies off?); maxP99LatencyMs "
            "cannot be checked",
        )
    p99 = f", p99LatencyMs {figures.p99_ms:.3g}" if figures.p99_ms is not None else ""
    return Analysis(
        Verdict.PASS,
        note=f"errorRate {error_rate:.3g} over {figures.requests:.0f} requests{p99}",
    )


def advance(counters: Counters, analysis: Analysis, spec: CanarySpec) -> Advance:
    """Count one analysis; `failureThreshold` in a row rolls back, as many passes promote.

    An inconclusive analysis leaves both counters unchanged: it neither counts as a pass nor
    forgives earlier failures, so "in a row" means in a row among conclusive analyses. After a
    promotion the counters start again at zero for the next step; on rollback they are kept as
    the record of what happened.
    """
    threshold = spec.failure_threshold
    if analysis.verdict == Verdict.FAIL:
        new = Counters(passes=0, failures=counters.failures + 1)
        if new.failures >= threshold:
            return Advance(
                new,
                Decision.ROLLBACK,
                f"{new.failures} consecutive failed analyses (failureThreshold {threshold}): "
                f"{analysis.message}",
            )
        return Advance(
            new,
            Decision.CONTINUE,
            f"analysis failed {new.failures}/{threshold}: {analysis.message}",
        )
    if analysis.verdict == Verdict.PASS:
        new = Counters(passes=counters.passes + 1, failures=0)
        if new.passes >= threshold:
            return Advance(
                Counters(), Decision.PROMOTE, f"{new.passes} consecutive passed analyses"
            )
        return Advance(new, Decision.CONTINUE, f"analysis passed {new.passes}/{threshold}")
    return Advance(counters, Decision.CONTINUE, f"inconclusive: {analysis.message}")


def _as_datetime(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod.get("status") or {}
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def crash_loop(
    pods: Sequence[Mapping[str, Any]], restart_limit: int = CRASH_LOOP_RESTARTS
) -> RollbackCause | None:
    """CrashLoop when a container restarted `restart_limit` times or is in CrashLoopBackOff."""
    for pod in pods:
        pod_name = (pod.get("metadata") or {}).get("name", "?")
        for cs in _statuses(pod):
            restarts = int(cs.get("restartCount") or 0)
            waiting = (cs.get("state") or {}).get("waiting") or {}
            looping = waiting.get("reason") == "CrashLoopBackOff"
            if restarts >= restart_limit or looping:
                last = (cs.get("lastState") or {}).get("terminated") or {}
                detail = ""
                if last:
                    detail = (
                        f"; last exit {last.get('exitCode', '?')} ({last.get('reason', 'unknown')})"
                    )
                state = " and is in CrashLoopBackOff" if looping else ""
                return RollbackCause(
                    RollbackReason.CRASH_LOOP,
                    f"pod {pod_name} container {cs.get('name', '?')} restarted {restarts} times "
                    f"(limit {restart_limit}){state}{detail}",
                )
    return None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def progress_deadline(
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    desired: int,
    started_at: datetime | str,
    now: datetime | str,
    deadline_seconds: int,
) -> RollbackCause | None:
    """A ProgressDeadlineExceeded cause when fewer than `desired` pods are ready past the deadline.

    Kubernetes' own Progressing=False/ProgressDeadlineExceeded on the Deployment also counts.
    `desired` is the replica count of the current step; started_at is when it began.
    """
    dep_status = (deployment or {}).get("status") or {}
    for cond in dep_status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return RollbackCause(
                RollbackReason.PROGRESS_DEADLINE,
                f"Deployment reports ProgressDeadlineExceeded: {cond.get('message', '')}".rstrip(
                    ": "
                ),
            )
    ready = sum(1 for p in pods if _pod_ready(p))
    if deployment is not None and not pods:
        ready = int(dep_status.get("readyReplicas") or 0)
    waited = (_as_datetime(now) - _as_datetime(started_at)).total_seconds()
    if ready < desired and waited > deadline_seconds:
        return RollbackCause(
            RollbackReason.PROGRESS_DEADLINE,
            f"{ready}/{desired} pods ready after {waited:.0f}s "
            f"(progressDeadlineSeconds {deadline_seconds})",
        )
    return None


def rollback_cause(
    advance_result: Advance | None,
    deployment: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    desired: int,
    started_at: datetime | str,
    now: datetime | str,
    deadline_seconds: int,
) -> RollbackCause | None:
    """The first reason to roll back, crash loops first (they also stall progress), else None."""
    cause = crash_loop(pods) or progress_deadline(
        deployment,
        pods,
        desired=desired,
        started_at=started_at,
        now=now,
        deadline_seconds=deadline_seconds,
    )
    if cause is not None:
        return cause
    if advance_result is not None and advance_result.decision == Decision.ROLLBACK:
        return RollbackCause(RollbackReason.ANALYSIS_FAILED, advance_result.message)
    return None
