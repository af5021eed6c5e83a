"""Canary analysis verdicts, counting in a row, crash loops and the Deployment's own deadline."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import CanarySpec, NoTrafficPolicy, RolloutProgress
from modelops_operator.decide.analysis import Analysis, Verdict, analyse
from modelops_operator.decide.pod_health import crash_loop, deployment_gave_up
from modelops_operator.decide.revisions import view_revision
from modelops_operator.decide.rollout import count_analysis
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


def counted(
    seq: list[Analysis],
    policy: NoTrafficPolicy = NoTrafficPolicy.PROMOTE,
    validated: bool = True,
) -> RolloutProgress:
    progress = RolloutProgress(validated=validated)
    for analysis in seq:
        progress = count_analysis(progress, analysis, policy)
    return progress


@pytest.mark.parametrize(
    ("seq", "passes", "failures"),
    [
        ([FAIL, FAIL], 0, 2),
        ([FAIL, PASS, FAIL], 0, 1),
        ([FAIL, INC, FAIL], 0, 2),  # inconclusive does not forgive
        ([PASS, INC, PASS], 2, 0),  # nor break a run of passes
        ([INC, INC, INC, INC], 0, 0),  # no traffic never counts either way
        ([PASS, FAIL, PASS], 1, 0),
    ],
)
def test_counting_in_a_row(seq: list[Analysis], passes: int, failures: int) -> None:
    progress = counted(seq)
    assert (progress.passes, progress.failures) == (passes, failures)


NO_TRAFFIC = Analysis(Verdict.INCONCLUSIVE, note="no client traffic", no_traffic=True)


@pytest.mark.parametrize(
    ("policy", "validated", "passes"),
    [
        (NoTrafficPolicy.PROMOTE, True, 2),  # judged by its validation run
        (NoTrafficPolicy.WAIT, True, 0),  # today's wait for traffic
        (NoTrafficPolicy.PROMOTE, False, 0),  # nothing proved yet: no pass without traffic
    ],
)
def test_no_traffic_counts_only_for_a_validated_candidate_under_promote(
    policy: NoTrafficPolicy, validated: bool, passes: int
) -> None:
    progress = counted([NO_TRAFFIC, NO_TRAFFIC], policy, validated)
    assert (progress.passes, progress.failures) == (passes, 0)


@pytest.mark.parametrize("policy", list(NoTrafficPolicy))
def test_no_traffic_never_forgives_a_failure(policy: NoTrafficPolicy) -> None:
    progress = counted([FAIL, NO_TRAFFIC, NO_TRAFFIC], policy)
    assert (progress.passes, progress.failures) == (0, 1)


def test_counted_note_says_why() -> None:
    assert counted([FAIL]).note == "errorRate 0.5 > maxErrorRate 0.01"
    assert counted([INC]).note == "inconclusive: canary received no traffic in the last 15s"


@given(st.lists(st.sampled_from([PASS, FAIL, INC]), max_size=30))
def test_counters_are_the_trailing_run_of_conclusive_verdicts(seq: list[Analysis]) -> None:
    conclusive = [a.verdict for a in seq if a.verdict != Verdict.INCONCLUSIVE]
    trailing = 0
    for verdict in reversed(conclusive):
        if verdict != (conclusive[-1] if conclusive else None):
            break
        trailing += 1
    progress = counted(seq)
    if not conclusive:
        assert (progress.passes, progress.failures) == (0, 0)
    elif conclusive[-1] == Verdict.PASS:
        assert (progress.passes, progress.failures) == (trailing, 0)
    else:
        assert (progress.passes, progress.failures) == (0, trailing)


def pod(name: str, *, ready: bool = True, restarts: int = 0, waiting: str | None = None) -> Any:
    status: dict[str, Any] = {"name": "triton", "restartCount": restarts, "state": {}}
    if waiting:
        status["state"] = {"waiting": {"reason": waiting}}
        status["lastState"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [status],
        },
    }


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([pod("a"), pod("b", restarts=2)], None),
        ([pod("a"), pod("b", restarts=3)], "pod b container triton restarted 3 times (limit 3)"),
        (
            [pod("c", ready=False, restarts=1, waiting="CrashLoopBackOff")],
            "restarted 1 times (limit 3), CrashLoopBackOff, last exit: OOMKilled",
        ),
        ([pod("d", ready=False, waiting="ContainerCreating")], None),
        ([{"metadata": {"name": "e"}}], None),
    ],
)
def test_crash_loop(pods: list[Any], expected: str | None) -> None:
    message = crash_loop(pods)
    if expected is None:
        assert message is None
    else:
        assert message is not None
        assert expected in message


def test_the_deployments_own_progress_deadline_is_honoured() -> None:
    gave_up = {
        "metadata": {"labels": {"modelops.dev/revision": "3"}},
        "status": {
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "resnet-r3-x" has timed out progressing.',
                }
            ]
        },
    }
    message = deployment_gave_up(view_revision("resnet-r3", gave_up, []))
    assert message is not None
    assert "timed out progressing" in message
    progressing = {"status": {"conditions": [{"type": "Progressing", "status": "True"}]}}
    assert deployment_gave_up(view_revision("resnet-r3", progressing, [])) is None
    assert deployment_gave_up(None) is None
