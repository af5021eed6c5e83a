"""Canary analysis verdicts, consecutive counting, crash-loop and progress-deadline checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api.spec import CanarySpec
from modelops_operator.decide.analysis import (
    Analysis,
    Counters,
    Decision,
    RollbackReason,
    Verdict,
    advance,
    analyse,
    crash_loop,
    progress_deadline,
    rollback_cause,
)
from modelops_operator.metrics.rates import IntervalFigures

SPEC = CanarySpec(max_error_rate=0.01, max_p99_latency_ms=200, failure_threshold=2)
NO_LATENCY_GATE = CanarySpec(max_error_rate=0.01, failure_threshold=3)


def figs(ok: float, failed: float = 0.0, p99_ms: float | None = 20.0) -> IntervalFigures:
    return IntervalFigures(
        seconds=15.0,
        end=0.0,
        pods=1,
        successes=ok,
        failures_by_reason={"BACKEND": failed} if failed else {},
        inferences=ok,
        executions=ok,
        queue_us=0.0,
        requests_per_second=(ok + failed) / 15,
        inferences_per_second=ok / 15,
        p99_ms=p99_ms,
    )


@pytest.mark.parametrize(
    ("figures", "spec", "verdict", "text"),
    [
        (figs(1000, 5), SPEC, Verdict.PASS, "errorRate 0.00498 over 1005 requests"),
        (figs(55, 5), SPEC, Verdict.FAIL, "errorRate 0.0833 > maxErrorRate 0.01"),
        (figs(1000, 0, 250.0), SPEC, Verdict.FAIL, "p99LatencyMs 250 > maxP99LatencyMs 200"),
        (figs(10, 0, None), SPEC, Verdict.INCONCLUSIVE, "no p99 latency"),
        (figs(10, 0, None), NO_LATENCY_GATE, Verdict.PASS, "errorRate 0 over 10"),
        (
            figs(0, 0, None),
            SPEC,
            Verdict.INCONCLUSIVE,
            "canary received no traffic in the last 15s",
        ),
        (None, SPEC, Verdict.INCONCLUSIVE, "no metrics"),
        (figs(10, 10, None), SPEC, Verdict.FAIL, "(10 of 20 requests failed: BACKEND 10)"),
        (figs(100, 1), SPEC, Verdict.PASS, "errorRate 0.0099"),
    ],
)
def test_analyse_table(
    figures: IntervalFigures | None, spec: CanarySpec, verdict: Verdict, text: str
) -> None:
    result = analyse(figures, spec)
    assert result.verdict == verdict
    assert text in result.message


def test_both_gates_are_reported_and_min_requests_guards_tiny_samples() -> None:
    both = analyse(figs(10, 10, 900.0), SPEC)
    assert len(both.reasons) == 2
    few = analyse(figs(3, 1), SPEC, min_requests=20)
    assert few.verdict == Verdict.INCONCLUSIVE
    assert "fewer than the 20" in few.message


PASS = Analysis(Verdict.PASS)
FAIL = Analysis(Verdict.FAIL, ("errorRate 0.5 > maxErrorRate 0.01",))
INC = Analysis(Verdict.INCONCLUSIVE, note="canary received no traffic in the last 15s")


def run(seq: list[Analysis], spec: CanarySpec = SPEC) -> list[Decision]:
    counters, out = Counters(), []
    for a in seq:
        step = advance(counters, a, spec)
        counters = step.counters
        out.append(step.decision)
    return out


@pytest.mark.parametrize(
    ("seq", "last"),
    [
        ([FAIL, FAIL], Decision.ROLLBACK),
        ([FAIL, PASS, FAIL], Decision.CONTINUE),
        ([FAIL, INC, FAIL], Decision.ROLLBACK),  # inconclusive does not forgive
        ([PASS, INC, PASS], Decision.PROMOTE),  # nor break a run of passes
        ([INC, INC, INC, INC], Decision.CONTINUE),  # no traffic never promotes or rolls back
        ([PASS, FAIL, PASS], Decision.CONTINUE),
        ([PASS, PASS], Decision.PROMOTE),
    ],
)
def test_advance_sequences(seq: list[Analysis], last: Decision) -> None:
    assert run(seq)[-1] == last


def test_advance_messages_and_counters() -> None:
    step = advance(Counters(failures=1), FAIL, SPEC)
    assert step.counters == Counters(passes=0, failures=2)
    assert "2 consecutive failed analyses (failureThreshold 2): errorRate 0.5" in step.message
    promoted = advance(Counters(passes=1), PASS, SPEC)
    assert promoted.counters == Counters()  # the next step starts counting afresh


@given(st.lists(st.sampled_from([PASS, FAIL, INC]), max_size=30))
def test_only_inconclusive_never_decides_and_rollback_needs_threshold_fails(
    seq: list[Analysis],
) -> None:
    counters = Counters()
    conclusive: list[Verdict] = []
    for a in seq:
        step = advance(counters, a, NO_LATENCY_GATE)
        if a.verdict != Verdict.INCONCLUSIVE:
            conclusive.append(a.verdict)
        if step.decision == Decision.ROLLBACK:
            assert conclusive[-3:] == [Verdict.FAIL] * 3
        if step.decision == Decision.PROMOTE:
            assert conclusive[-3:] == [Verdict.PASS] * 3
        if a.verdict == Verdict.INCONCLUSIVE:
            assert step.decision == Decision.CONTINUE
            assert step.counters == counters
        counters = Counters() if step.decision == Decision.PROMOTE else step.counters


def pod(name: str, *, ready: bool = True, restarts: int = 0, waiting: str | None = None) -> Any:
    cs: dict[str, Any] = {"name": "triton", "restartCount": restarts, "state": {}}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting}}
        cs["lastState"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [cs],
        },
    }


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([pod("a"), pod("b", restarts=2)], None),
        ([pod("a"), pod("b", restarts=3)], "pod b container triton restarted 3 times (limit 3)"),
        (
            [pod("c", ready=False, restarts=1, waiting="CrashLoopBackOff")],
            "restarted 1 times (limit 3) and is in CrashLoopBackOff; last exit 137 (OOMKilled)",
        ),
        ([pod("d", ready=False, waiting="ContainerCreating")], None),
        ([{"metadata": {"name": "e"}}], None),
    ],
)
def test_crash_loop(pods: list[Any], expected: str | None) -> None:
    cause = crash_loop(pods)
    if expected is None:
        assert cause is None
    else:
        assert cause is not None
        assert cause.reason == RollbackReason.CRASH_LOOP
        assert expected in cause.message


T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pods", "after_s", "expected"),
    [
        ([pod("a"), pod("b", ready=False)], 599, None),
        ([pod("a"), pod("b", ready=False)], 601, "1/2 pods ready after 601s"),
        ([pod("a"), pod("b")], 10_000, None),
    ],
)
def test_progress_deadline(pods: list[Any], after_s: int, expected: str | None) -> None:
    cause = progress_deadline(
        None,
        pods,
        desired=2,
        started_at=T0,
        now=T0 + timedelta(seconds=after_s),
        deadline_seconds=600,
    )
    assert (cause.message if cause else None) == (
        None if expected is None else f"{expected} (progressDeadlineSeconds 600)"
    )


def test_progress_deadline_from_deployment_condition_and_iso_strings() -> None:
    dep = {
        "status": {
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "resnet-r3-x" has timed out progressing.',
                }
            ]
        }
    }
    cause = progress_deadline(
        dep,
        [],
        desired=1,
        started_at="2025-01-01T00:00:00Z",
        now="2025-01-01T00:00:05Z",
        deadline_seconds=600,
    )
    assert cause is not None
    assert cause.reason == RollbackReason.PROGRESS_DEADLINE
    assert "timed out progressing" in cause.message


def test_rollback_cause_prefers_crash_loop_then_analysis() -> None:
    failed = advance(Counters(failures=1), FAIL, SPEC)
    common: dict[str, Any] = {
        "desired": 1,
        "started_at": T0,
        "now": T0,
        "deadline_seconds": 600,
    }
    crashing = rollback_cause(failed, None, [pod("a", restarts=5)], **common)
    assert crashing is not None
    assert crashing.reason == RollbackReason.CRASH_LOOP
    analysis = rollback_cause(failed, None, [pod("a")], **common)
    assert analysis is not None
    assert analysis.reason == RollbackReason.ANALYSIS_FAILED
    assert "errorRate 0.5 > maxErrorRate 0.01" in analysis.message
    assert rollback_cause(advance(Counters(), PASS, SPEC), None, [pod("a")], **common) is None
