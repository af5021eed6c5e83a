"""PURE: a staged source the engine server lost is staged again, by itself.

The build Job reads the model its ModelDeployment's source Job sent to the engine server's
inbox. When the engine server restarted (a node drain, an upgrade, an eviction) with its inbox
on a volume that did not survive, or kept the source past its inbox TTL, the build fails with
`SourceNotStaged`. That is no fault of the model nor of the build: the operator runs the source
Job again (in the tenant's namespace, with the tenant's credentials), then the build, at most
`build.backoffLimit` times per build (the build's own retry limit), with a `SourceRestaged`
Event. The ModelDeployment becomes Degraded or Failed only when the staging itself fails, or
the source is lost once more past that limit.

Which staging a Job is part of is its `modelops.dev/staging` annotation: a source Job made for
staging N replaces an older one, and the build Job started after it carries N too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelops_contract.request import parse_summary

from ..render.common import ANNOTATION_STAGING
from .jobs import JobState, job_state

LOST_SOURCE = "SourceNotStaged"
RESTAGING = "RestagingSource"


def staging_of(job: Mapping[str, Any] | None) -> int:
    """The staging a Job belongs to (0 for the first, and for Jobs made before stagings were
    counted)."""
    raw = ((job or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION_STAGING)
    return int(raw) if isinstance(raw, str) and raw.isdigit() else 0


def lost_source(job: Mapping[str, Any] | None, message: str | None) -> bool:
    """The build Job failed because the engine server no longer held its staged source
    (`message`: its pod's termination message, the builder's summary)."""
    if job_state(job) != JobState.FAILED:
        return False
    summary = parse_summary(message) if message is not None else None
    return summary is not None and not summary.ok and summary.reason == LOST_SOURCE


def next_staging(job: Mapping[str, Any] | None, message: str | None, limit: int) -> int | None:
    """The staging to run for a build Job that lost its source; None when it did not, or when
    `limit` stagings after the first were already made (the build then fails as any other)."""
    if not lost_source(job, message):
        return None
    staging = staging_of(job) + 1
    return staging if staging <= limit else None


def restaging_message(build_job: str, staging: int, limit: int) -> str:
    """What EngineBuilt and the SourceRestaged Event say while the source is staged again."""
    return (
        f"the engine server no longer holds the source of build Job {build_job} (it restarted, "
        f"or kept it past its inbox TTL): staging it again with the source Job, then building "
        f"again (staging {staging} of at most {limit})"
    )
