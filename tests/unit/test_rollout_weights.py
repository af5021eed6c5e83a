"""decide/rollout.py: the candidate's share of requests at each look, and what a step without
client traffic does (it passes on its validation run, or waits under NoTrafficPolicy Wait)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import NoTrafficPolicy, RolloutProgress, RolloutSpec
from modelops_operator.decide.analysis import Analysis, Verdict
from modelops_operator.decide.revisions import RevisionView
from modelops_operator.decide.rollout import (
    Outcome,
    StepInput,
    count_analysis,
    split_canary,
    step_rollout,
)
from modelops_operator.decide.validation import ValidationState, ValidationView
from tests.support.decide_world import FAST, STEPS, T0, ready_pod

STARTED = "2025-01-01T12:00:00Z"  # T0
NO_TRAFFIC = Analysis(Verdict.INCONCLUSIVE, note="no client traffic", no_traffic=True)
PASS = Analysis(Verdict.PASS, note="errorRate 0 over 100 requests")
FAIL = Analysis(Verdict.FAIL, ("errorRate 0.2 > 0.01",))
PASSED = ValidationView(ValidationState.PASSED, message="8 samples on 2 pods")


def revision(number: int, replicas: int, ready: int, crash: bool = False) -> RevisionView:
    """A revision Deployment with `ready` of `replicas` pods ready since T0."""
    pods: list[dict[str, Any]] = [ready_pod(f"r{number}-{i}", T0) for i in range(ready)]
    if crash:
        pods.append(ready_pod(f"r{number}-x", T0, restarts=5, waiting="CrashLoopBackOff"))
    name = f"resnet-r{number}"
    return RevisionView(number, name, "k", "h", 1, "", replicas, ready, True, {}, tuple(pods))


def look(
    *,
    step: int = 0,
    ready: int | None = None,
    replicas: int | None = None,
    validated: bool = True,
    validation: ValidationView = PASSED,
    analysis: Analysis | None = None,
    enabled: bool = False,
    seconds: float = 0,
    policy: NoTrafficPolicy = NoTrafficPolicy.PROMOTE,
    failures: int = 0,
    passes: int = 0,
    crash: bool = False,
) -> StepInput:
    """One look at a 4-replica canary [25, 50, 100], `seconds` after its step started."""
    steps = [25, 50, 100]
    new, _ = split_canary(4, steps[step])
    spec = RolloutSpec.model_validate(
        {"canary": {"steps": steps, "analysisIntervalSeconds": 10, "failureThreshold": 2}}
    ).model_copy(update={"no_traffic": policy})
    progress = RolloutProgress(
        step=step,
        step_started_at=STARTED,
        started_at=STARTED,
        validated=validated,
        failures=failures,
        passes=passes,
    )
    return StepInput(
        spec=spec,
        steps=steps,
        desired=4,
        current=revision(1, 4, 4),
        candidate=revision(
            2, new if replicas is None else replicas, new if ready is None else ready, crash
        ),
        progress=progress,
        analysis=analysis,
        analysis_enabled=enabled,
        immediate=False,
        validation=validation,
        now=T0 + timedelta(seconds=seconds),
    )


VALIDATING = ValidationView(ValidationState.RUNNING)
ABSENT = ValidationView(ValidationState.ABSENT)
FAILED = ValidationView(ValidationState.FAILED, message="ValidationFailed: wrong answers")

WEIGHTS = [
    # (id, look, outcome, weight)
    ("not-ready-not-validated", look(ready=0, validated=False, validation=ABSENT), "Waiting", 0),
    ("ready-validation-starts", look(validated=False, validation=ABSENT), "Waiting", 0),
    ("ready-validation-runs", look(validated=False, validation=VALIDATING), "Waiting", 0),
    ("validation-failed", look(validated=False, validation=FAILED), "RolledBack", 0),
    ("validation-passed-now", look(validated=False, seconds=5), "Waiting", 25),
    ("step-1-held-for-interval", look(seconds=10), "StepPromoted", 25),
    ("step-2-scaling-up", look(step=1, replicas=2, ready=1), "Waiting", 25),
    ("step-2-shrinking", look(step=1, replicas=3, ready=3), "Waiting", 50),
    ("step-2-ready", look(step=1, seconds=3), "Waiting", 50),
    ("first-step-scaling-up", look(ready=0), "Waiting", 0),
    ("last-step-held", look(step=2, seconds=10), "Promoted", 100),
    ("crash-loop", look(step=1, crash=True), "RolledBack", 0),
    ("progress-deadline", look(step=1, ready=0, seconds=601), "RolledBack", 0),
    ("analyses-failed", look(step=1, analysis=FAIL, failures=1), "RolledBack", 0),
]


@pytest.mark.parametrize(
    ("given_", "outcome", "weight"), [c[1:] for c in WEIGHTS], ids=[c[0] for c in WEIGHTS]
)
def test_canary_weight_per_look(given_: StepInput, outcome: str, weight: int) -> None:
    result = step_rollout(given_)
    assert (result.outcome, result.canary_weight) == (outcome, weight), result.message


def test_validation_starts_only_when_no_run_exists() -> None:
    assert step_rollout(look(validated=False, validation=ABSENT)).start_validation is True
    assert step_rollout(look(validated=False, validation=VALIDATING)).start_validation is False


def test_validation_failure_rolls_back_naming_it() -> None:
    result = step_rollout(look(validated=False, validation=FAILED))
    assert result.reason == "ValidationFailed"
    assert "wrong answers" in result.message


def test_passing_validation_starts_the_step_window_now() -> None:
    result = step_rollout(look(validated=False, seconds=30))
    assert result.progress.validated is True
    assert result.progress.step_started_at == "2025-01-01T12:00:30Z"
    assert (result.candidate_replicas, result.current_replicas) == (1, 3)


def test_current_keeps_all_its_replicas_until_the_candidate_takes_requests() -> None:
    result = step_rollout(look(validated=False, validation=VALIDATING))
    assert (result.candidate_replicas, result.current_replicas) == (1, 4)


# --- count_analysis: silence is evidence only for a validated candidate that never failed -----
@pytest.mark.parametrize(
    ("policy", "validated", "failures", "passes_after"),
    [
        (NoTrafficPolicy.PROMOTE, True, 0, 1),
        (NoTrafficPolicy.PROMOTE, True, 1, 0),
        (NoTrafficPolicy.PROMOTE, False, 0, 0),
        (NoTrafficPolicy.WAIT, True, 0, 0),
    ],
    ids=["promote", "after-a-failure", "not-validated", "wait"],
)
def test_no_traffic_interval(
    policy: NoTrafficPolicy, validated: bool, failures: int, passes_after: int
) -> None:
    progress = RolloutProgress(validated=validated, failures=failures)
    counted = count_analysis(progress, NO_TRAFFIC, policy)
    assert counted.passes == passes_after
    assert counted.failures == failures  # silence never forgives nor adds a failure
    expected = "passed on its validation run" if passes_after else "inconclusive"
    assert expected in (counted.note or "")


@pytest.mark.parametrize(
    ("analysis", "passes", "failures"),
    [(PASS, 2, 0), (FAIL, 0, 2), (Analysis(Verdict.INCONCLUSIVE, note="no metrics"), 1, 1)],
    ids=["pass", "fail", "inconclusive"],
)
def test_count_analysis_in_a_row(analysis: Analysis, passes: int, failures: int) -> None:
    counted = count_analysis(
        RolloutProgress(passes=1, failures=1), analysis, NoTrafficPolicy.PROMOTE
    )
    assert (counted.passes, counted.failures) == (passes, failures)


def test_a_step_without_traffic_passes_after_the_analysis_window() -> None:
    """failureThreshold (2) silent intervals, then the next step."""
    first = step_rollout(look(analysis=NO_TRAFFIC, enabled=True, seconds=10))
    assert (first.outcome, first.progress.passes) == (Outcome.WAITING, 1)
    second = step_rollout(
        replace(look(analysis=NO_TRAFFIC, enabled=True, seconds=20), progress=first.progress)
    )
    assert second.outcome == Outcome.STEP_PROMOTED
    assert second.progress.step == 1


def test_wait_policy_keeps_a_silent_step_waiting() -> None:
    given_ = look(analysis=NO_TRAFFIC, enabled=True, policy=NoTrafficPolicy.WAIT)
    for interval in range(1, 20):
        result = step_rollout(replace(given_, now=T0 + timedelta(seconds=10 * interval)))
        assert (result.outcome, result.canary_weight) == (Outcome.WAITING, 25)
        given_ = replace(given_, progress=result.progress)
    assert given_.progress.passes == 0


def test_silence_after_a_failure_never_promotes() -> None:
    given_ = look(analysis=NO_TRAFFIC, enabled=True, failures=1)
    for _ in range(5):
        result = step_rollout(given_)
        assert result.outcome == Outcome.WAITING
        given_ = replace(given_, progress=result.progress)


# --- properties ------------------------------------------------------------------------------
ANALYSES = st.sampled_from([None, PASS, FAIL, NO_TRAFFIC, Analysis(Verdict.INCONCLUSIVE)])
VIEWS = st.sampled_from([PASSED, VALIDATING, ABSENT, FAILED])


@st.composite
def looks(draw: st.DrawFn) -> StepInput:
    steps = draw(st.sampled_from(STEPS))
    desired = draw(st.integers(1, 8))
    index = draw(st.integers(0, len(steps) - 1))
    replicas = draw(st.integers(0, desired))
    spec = RolloutSpec.model_validate(
        {"canary": {"steps": steps, "analysisIntervalSeconds": 10, "failureThreshold": 2}}
    ).model_copy(update={"no_traffic": draw(st.sampled_from(list(NoTrafficPolicy)))})
    progress = RolloutProgress(
        step=index,
        step_started_at=STARTED,
        validated=draw(st.booleans()),
        passes=draw(st.integers(0, 2)),
        failures=draw(st.integers(0, 1)),
    )
    current = draw(st.one_of(st.none(), st.integers(0, desired).map(lambda n: revision(1, n, n))))
    return StepInput(
        spec=spec,
        steps=steps,
        desired=desired,
        current=current,
        candidate=revision(2, replicas, draw(st.integers(0, replicas)), draw(st.booleans())),
        progress=progress,
        analysis=draw(ANALYSES),
        analysis_enabled=draw(st.booleans()),
        immediate=steps == [100],
        validation=draw(VIEWS),
        now=T0 + timedelta(seconds=draw(st.integers(0, 700))),
    )


@FAST
@given(looks())
def test_weight_is_a_step_percent_and_only_for_a_validated_candidate(given_: StepInput) -> None:
    result = step_rollout(given_)
    assert result.canary_weight in {0, *given_.steps}
    if result.canary_weight > 0:
        assert result.progress.validated, result
    if result.outcome == Outcome.ROLLED_BACK:
        assert result.canary_weight == 0
    if result.outcome == Outcome.PROMOTED:
        assert (result.canary_weight, result.current_replicas) == (100, 0)


@FAST
@given(looks())
def test_capacity_never_dips_while_a_rollout_runs(given_: StepInput) -> None:
    """The pair always runs the desired replicas; while the candidate takes no request, the
    current revision keeps what it had."""
    result = step_rollout(given_)
    if result.outcome in (Outcome.WAITING, Outcome.STEP_PROMOTED):
        assert result.candidate_replicas + result.current_replicas >= given_.desired
    current = given_.current
    if result.outcome == Outcome.WAITING and result.canary_weight == 0 and current is not None:
        assert result.current_replicas >= min(current.replicas, given_.desired)


@FAST
@given(looks())
def test_a_failed_validation_never_gets_requests(given_: StepInput) -> None:
    failed = replace(
        given_, validation=FAILED, progress=given_.progress.model_copy(update={"validated": False})
    )
    result = step_rollout(failed)
    assert result.canary_weight == 0
    if result.outcome != Outcome.WAITING:
        assert result.outcome == Outcome.ROLLED_BACK
