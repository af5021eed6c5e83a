"""The one Job state machine of the source and build Jobs (decide/job_phase.py), as a table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import ModelDeployment
from modelops_operator.decide.job_phase import (
    Absent,
    Done,
    Failed,
    Retry,
    Running,
    Terminating,
    job_phase,
)
from modelops_operator.render.common import ANNOTATION_GENERATION, ANNOTATION_RETRY
from tests.support.decide_world import T0, body

PATIENCE = 600.0


def md(generation: int = 2, retry: str = "") -> ModelDeployment:
    annotations = {ANNOTATION_RETRY: retry} if retry else {}
    return ModelDeployment.from_body(body(generation=generation, annotations=annotations))


def job(
    condition: str | None = None,
    *,
    made_for: int = 2,
    retry: str = "",
    deleting: bool = False,
) -> dict[str, Any]:
    annotations = {ANNOTATION_GENERATION: str(made_for)}
    if retry:
        annotations[ANNOTATION_RETRY] = retry
    meta: dict[str, Any] = {"name": "j", "annotations": annotations}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T12:00:00Z"
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return {"metadata": meta, "spec": {"backoffLimit": 0}, "status": {"conditions": conditions}}


def unschedulable(minutes: float) -> dict[str, Any]:
    since = (T0 - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available",
        "lastTransitionTime": since,
    }
    return {
        "metadata": {"name": "j-0", "creationTimestamp": since},
        "status": {"phase": "Pending", "conditions": [condition]},
    }


def phase(
    model: ModelDeployment,
    the_job: dict[str, Any] | None,
    result: str | None = None,
    pods: tuple[dict[str, Any], ...] = (),
) -> Any:
    return job_phase(model, the_job, result, what="Job j", pods=pods, now=T0, patience=PATIENCE)


@pytest.mark.parametrize(
    ("the_job", "result", "model", "pods", "expected"),
    [
        (None, None, md(), (), Absent),
        (None, "r", md(), (), Absent),
        (job(deleting=True), None, md(), (), Terminating),
        (job("Complete", deleting=True), "r", md(), (), Terminating),
        (job(), None, md(), (), Running),
        (job("Complete"), "r", md(), (), Done),
        # a success without its result counts as a failure
        (job("Complete"), None, md(), (), Failed),
        (job("Complete"), None, md(generation=3), (), Retry),
        (job("Failed"), None, md(), (), Failed),
        (job("Failed"), "r", md(), (), Failed),
        # a new generation, or a new retry annotation, retries
        (job("Failed", made_for=1), None, md(), (), Retry),
        (job("Failed"), None, md(retry="again"), (), Retry),
        (job("Failed", retry="again"), None, md(retry="again"), (), Failed),
        # a stuck pod: waiting within the patience, then failed (or retried)
        (job(), None, md(), (unschedulable(5),), Running),
        (job(), None, md(), (unschedulable(11),), Failed),
        (job(made_for=1), None, md(), (unschedulable(11),), Retry),
    ],
)
def test_job_phase_table(
    the_job: dict[str, Any] | None,
    result: str | None,
    model: ModelDeployment,
    pods: tuple[dict[str, Any], ...],
    expected: type,
) -> None:
    assert type(phase(model, the_job, result, pods)) is expected


def test_stuck_pod_is_reported_then_fails_with_its_reason() -> None:
    waiting = phase(md(), job(), pods=(unschedulable(5),))
    assert isinstance(waiting, Running)
    assert waiting.stuck is not None
    assert waiting.stuck.reason == "Unschedulable"
    assert not waiting.stuck.expired
    failed = phase(md(), job(), pods=(unschedulable(11),))
    assert isinstance(failed, Failed)
    assert failed.stuck is not None
    assert failed.stuck.expired
    retried = phase(md(), job(made_for=1), pods=(unschedulable(11),))
    assert isinstance(retried, Retry)
    assert retried.stuck
    assert isinstance(phase(md(), job("Failed", made_for=1)), Retry)
    assert not phase(md(), job("Failed", made_for=1)).stuck


def test_done_carries_the_job_and_its_result() -> None:
    finished = job("Complete")
    done = phase(md(), finished, "receipt")
    assert done == Done(finished, "receipt")


@given(
    condition=st.sampled_from([None, "Complete", "Failed"]),
    deleting=st.booleans(),
    made_for=st.integers(0, 4),
    generation=st.integers(1, 4),
    result=st.sampled_from([None, "r"]),
)
def test_a_failed_job_is_retried_exactly_when_the_spec_moved_on(
    condition: str | None, deleting: bool, made_for: int, generation: int, result: str | None
) -> None:
    found = phase(
        md(generation=generation), job(condition, made_for=made_for, deleting=deleting), result
    )
    finished_badly = condition == "Failed" or (condition == "Complete" and result is None)
    if deleting:
        assert isinstance(found, Terminating)
    elif finished_badly:
        assert isinstance(found, Retry if made_for < generation else Failed)
    elif condition == "Complete":
        assert isinstance(found, Done)
    else:
        assert isinstance(found, Running)
