"""decide/validation.py: where a candidate's validation run stands, what status records, and the
Job to write or delete."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_contract.manifest import EngineManifest
from modelops_contract.validation import ValidationSummary
from modelops_operator.api import ModelDeployment
from modelops_operator.decide.plan import Apply, Delete
from modelops_operator.decide.revisions import RevisionView
from modelops_operator.decide.validation import (
    ValidationState,
    ValidationView,
    figures,
    stale_jobs,
    start_job,
    targets,
    validation_status,
    view_validation,
)
from tests.support.decide_world import SETTINGS, T0, body, entry, key_of, ready_pod

PASSED = ValidationSummary(ok=True, samples=8, pods=2, max_abs_error=1.5e-7, max_rel_error=2e-6)
WRONG = ValidationSummary(
    ok=False, reason="ValidationFailed", message="pod 10.0.0.1:8001 serves wrong answers"
)


Seen = tuple[dict[str, Any], str | None]  # a Job, and the termination message its pod left


def job(
    condition: str | None = None,
    summary: ValidationSummary | str | None = None,
    deleting: bool = False,
    failed_message: str | None = None,
) -> Seen:
    """A validation Job of revision 2 and its pod's termination message, as observed."""
    status: dict[str, Any] = {}
    if condition:
        status["conditions"] = [{"type": condition, "status": "True"}]
        if failed_message is not None:
            status["conditions"][0]["message"] = failed_message
    message = summary if isinstance(summary, str) or summary is None else summary.to_line()
    meta: dict[str, Any] = {"name": "resnet-validate-r2"}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"backoffLimit": 0}, "status": status}, message


def view(seen: dict[str, Seen]) -> ValidationView:
    """view_validation of revision 2 over these Jobs and their messages."""
    jobs = {name: j for name, (j, _) in seen.items()}
    messages = {name: m for name, (_, m) in seen.items() if m is not None}
    return view_validation(jobs, messages, "resnet", 2)


CASES = [
    # (id, jobs, state, message)
    ("no-job", {}, ValidationState.ABSENT, ""),
    ("another-revision-job", {"resnet-validate-r1": job("Complete", PASSED)}, "Absent", ""),
    ("running", {"resnet-validate-r2": job()}, ValidationState.RUNNING, ""),
    ("deleting", {"resnet-validate-r2": job("Complete", PASSED, True)}, "Running", ""),
    (
        "passed",
        {"resnet-validate-r2": job("Complete", PASSED)},
        ValidationState.PASSED,
        "8 samples on 2 pods, max abs error 1.5e-07",
    ),
    (
        "wrong-answers",
        {"resnet-validate-r2": job("Failed", WRONG)},
        ValidationState.FAILED,
        "ValidationFailed: pod 10.0.0.1:8001 serves wrong answers",
    ),
    (
        "complete-but-not-ok",
        {"resnet-validate-r2": job("Complete", WRONG)},
        ValidationState.FAILED,
        "ValidationFailed: pod 10.0.0.1:8001 serves wrong answers",
    ),
    (
        "complete-without-summary",
        {"resnet-validate-r2": job("Complete")},
        ValidationState.FAILED,
        "validation Job failed without a summary",
    ),
    (
        "garbled-summary",
        {"resnet-validate-r2": job("Complete", "Segmentation fault")},
        ValidationState.FAILED,
        "validation Job failed without a summary",
    ),
    (
        "deadline-without-summary",
        {"resnet-validate-r2": job("Failed", failed_message="Job was active longer than allowed")},
        ValidationState.FAILED,
        "validation Job failed without a summary Job was active longer than allowed",
    ),
]


@pytest.mark.parametrize(
    ("jobs", "state", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_view_validation(jobs: dict[str, Seen], state: str, message: str) -> None:
    seen = view(jobs)
    assert (seen.state, seen.message) == (state, message)


def test_only_a_passed_summary_counts_as_passed() -> None:
    seen = view({"resnet-validate-r2": job("Complete", PASSED)})
    assert seen.summary == PASSED


def test_a_summary_without_a_reason_does_not_say_none() -> None:
    bare = ValidationSummary(ok=False, message="pods unreachable")
    seen = view({"resnet-validate-r2": job("Failed", bare)})
    assert seen.state == ValidationState.FAILED
    assert "None" not in seen.message
    assert "pods unreachable" in seen.message


# --- figures ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("summary", "line"),
    [
        (ValidationSummary(ok=True, samples=8, pods=2), "8 samples on 2 pods"),
        (
            ValidationSummary(ok=True, samples=100, pods=3, accuracy=0.91234, agreement=0.5),
            "100 samples on 3 pods, accuracy 0.9123, agreement 0.5000",
        ),
        (
            ValidationSummary(ok=True, samples=1, pods=1, max_abs_error=0.000123456),
            "1 samples on 1 pods, max abs error 0.000123",
        ),
    ],
    ids=["counts-only", "user-set", "errors"],
)
def test_figures(summary: ValidationSummary, line: str) -> None:
    assert figures(summary) == line


# --- validation_status -----------------------------------------------------------------------
@pytest.mark.parametrize("state", [ValidationState.ABSENT, ValidationState.RUNNING])
def test_no_status_before_the_run_finished(state: ValidationState) -> None:
    assert validation_status(2, ValidationView(state), "now") is None


def test_passed_status_carries_the_figures() -> None:
    record = validation_status(2, ValidationView(ValidationState.PASSED, PASSED, "ok"), "now")
    assert record is not None
    assert (record.revision, record.passed, record.samples, record.pods) == (2, True, 8, 2)
    assert (record.max_abs_error, record.max_rel_error) == (1.5e-7, 2e-6)
    assert (record.message, record.time) == ("ok", "now")


@given(st.text(min_size=0, max_size=3000))
def test_failed_status_fits_the_schema(message: str) -> None:
    record = validation_status(3, ValidationView(ValidationState.FAILED, None, message), "now")
    assert record is not None
    assert record.passed is False
    assert record.samples is None
    assert record.message == message[:1024]


# --- targets and the Job ---------------------------------------------------------------------
def candidate(pods: list[dict[str, Any]]) -> RevisionView:
    return RevisionView(
        2, "resnet-r2", "k", "h", 1, "", len(pods), len(pods), True, {}, tuple(pods)
    )


def pod(name: str, ip: str | None, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    made = ready_pod(name, T0, waiting=None if ready else "ContainerCreating")
    if ip is None:
        del made["status"]["podIP"]
    else:
        made["status"]["podIP"] = ip
    if deleting:
        made["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return made


def test_targets_are_the_ready_pods_grpc_endpoints() -> None:
    pods = [
        pod("b", "10.0.0.2"),
        pod("a", "10.0.0.1"),
        pod("v6", "fd00::5"),
        pod("starting", "10.0.0.3", ready=False),
        pod("no-ip", None),
        pod("leaving", "10.0.0.4", deleting=True),
    ]
    assert targets(candidate(pods)) == ["10.0.0.1:8001", "10.0.0.2:8001", "[fd00::5]:8001"]


def test_no_job_before_a_pod_has_an_address() -> None:
    md_body = body()
    manifest = EngineManifest.model_validate(entry(key_of(md_body)))
    md = ModelDeployment.from_body(md_body)
    assert start_job(md, 2, candidate([pod("a", None)]), manifest, SETTINGS) == ()
    (action,) = start_job(md, 2, candidate([pod("a", "10.0.0.1")]), manifest, SETTINGS)
    assert isinstance(action, Apply)
    assert action.manifest["kind"] == "Job"
    assert action.manifest["metadata"]["name"] == "resnet-validate-r2"
    assert "10.0.0.1:8001" in str(action.manifest["spec"])


@pytest.mark.parametrize(
    ("jobs", "keep", "deleted"),
    [
        (["resnet-validate-r1", "resnet-validate-r2"], [2], ["resnet-validate-r1"]),
        (
            ["resnet-validate-r2", "resnet-validate-r1"],
            [],
            ["resnet-validate-r1", "resnet-validate-r2"],
        ),
        (["resnet-validate-r2"], [2], []),
        ([], [2], []),
    ],
    ids=["older-revision", "nobody-waits", "still-waiting", "none"],
)
def test_stale_jobs(jobs: list[str], keep: list[int], deleted: list[str]) -> None:
    actions = stale_jobs({name: {} for name in jobs}, "resnet", keep)
    assert actions == tuple(Delete("batch/v1", "Job", name) for name in deleted)
