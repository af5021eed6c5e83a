"""The validation run of a candidate: where its Job stands, and the Job to write or delete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelops_contract.manifest import EngineManifest
from modelops_contract.validation import ValidationSummary, parse_validation_summary

from ..api import ModelDeployment, ValidationStatus
from ..render.names import validation_job_name
from ..render.revision import GRPC_PORT
from ..render.validation_job import render_validation_job
from ..settings import Settings
from .jobs import JobState, job_state
from .plan import Action, Apply, Delete
from .revisions import RevisionView


class ValidationState(StrEnum):
    """Where the candidate's validation stands."""

    ABSENT = "Absent"
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"


@dataclass(frozen=True)
class ValidationView:
    """The candidate's validation Job read back: its state and its summary."""

    state: ValidationState
    summary: ValidationSummary | None = None
    message: str = ""


def view_validation(
    jobs: Mapping[str, Mapping[str, Any]], messages: Mapping[str, str], md_name: str, revision: int
) -> ValidationView:
    """Read the validation Job of `revision` (its pod's termination message: the summary)."""
    name = validation_job_name(md_name, revision)
    job = jobs.get(name)
    state = job_state(job)
    if job is None or state == JobState.ABSENT:
        return ValidationView(ValidationState.ABSENT)
    if state in (JobState.RUNNING, JobState.TERMINATING):
        return ValidationView(ValidationState.RUNNING)
    text = messages.get(name)
    summary = parse_validation_summary(text) if isinstance(text, str) else None
    if state == JobState.SUCCEEDED and summary is not None and summary.ok:
        return ValidationView(ValidationState.PASSED, summary, figures(summary))
    if summary is None:
        reason = next(
            (
                str(c.get("message") or c.get("reason") or "")
                for c in (job.get("status") or {}).get("conditions") or []
                if c.get("type") == "Failed" and c.get("status") == "True"
            ),
            "",
        )
        return ValidationView(
            ValidationState.FAILED,
            None,
            f"validation Job failed without a summary {reason}".strip(),
        )
    text = ": ".join(part for part in (summary.reason, summary.message) if part)
    return ValidationView(ValidationState.FAILED, summary, text or "validation failed")


def figures(summary: ValidationSummary) -> str:
    """One line of what a passed run measured."""
    parts = [f"{summary.samples} samples on {summary.pods} pods"]
    if summary.max_abs_error is not None:
        parts.append(f"max abs error {summary.max_abs_error:.3g}")
    if summary.accuracy is not None:
        parts.append(f"accuracy {summary.accuracy:.4f}")
    if summary.agreement is not None:
        parts.append(f"agreement {summary.agreement:.4f}")
    return ", ".join(parts)


def targets(candidate: RevisionView) -> list[str]:
    """host:port of the gRPC endpoint of every ready candidate pod."""
    found = []
    for pod in candidate.pods:
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        ip = status.get("podIP")
        if ready and ip and not (pod.get("metadata") or {}).get("deletionTimestamp"):
            host = f"[{ip}]" if ":" in str(ip) else str(ip)
            found.append(f"{host}:{GRPC_PORT}")
    return sorted(found)


def start_job(
    md: ModelDeployment,
    revision: int,
    candidate: RevisionView,
    manifest: EngineManifest,
    settings: Settings,
) -> tuple[Action, ...]:
    """The validation Job of a ready candidate (none while no pod has an address yet)."""
    found = targets(candidate)
    if not found:
        return ()
    return (Apply(render_validation_job(md, revision, manifest, found, settings)),)


def stale_jobs(
    jobs: Mapping[str, Mapping[str, Any]], md_name: str, keep: Sequence[int]
) -> tuple[Action, ...]:
    """Validation Jobs of revisions that no longer wait for one."""
    wanted = {validation_job_name(md_name, n) for n in keep}
    return tuple(Delete("batch/v1", "Job", name) for name in sorted(jobs) if name not in wanted)


def validation_status(revision: int, view: ValidationView, now: str) -> ValidationStatus | None:
    """status.validation for a finished run."""
    if view.state not in (ValidationState.PASSED, ValidationState.FAILED):
        return None
    summary = view.summary
    return ValidationStatus(
        revision=revision,
        passed=view.state == ValidationState.PASSED,
        samples=summary.samples if summary else None,
        pods=summary.pods if summary else None,
        max_abs_error=summary.max_abs_error if summary else None,
        max_rel_error=summary.max_rel_error if summary else None,
        accuracy=summary.accuracy if summary else None,
        agreement=summary.agreement if summary else None,
        message=view.message[:1024],
        time=now,
    )
