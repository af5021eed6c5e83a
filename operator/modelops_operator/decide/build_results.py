"""What a build produced, read from its pod's termination message or from a store entry:
the builder's summary, a failure's reason and message, and `status.engine` (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from modelops_contract.manifest import EngineManifest, summary_of
from modelops_contract.request import BuildSummary, parse_summary

from ..api import AccuracyFigures, EngineStatus, LatencyFigures, ShapeStatus
from ..api.engine_figures import baseline_status, quantization_status

_REASON = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def job_summary(message: str | None) -> BuildSummary | None:
    """The builder's summary from its pod's termination message."""
    return parse_summary(message) if message is not None else None


def job_failure(job: Mapping[str, Any], summary: BuildSummary | None) -> tuple[str, str]:
    """(reason, message) of a failed build: the builder's own, else the Job's condition."""
    condition: Mapping[str, Any] = next(
        (
            c
            for c in (job.get("status") or {}).get("conditions") or []
            if c.get("type") == "Failed" and c.get("status") == "True"
        ),
        {},
    )
    reason = (summary.reason if summary else None) or condition.get("reason") or "BuildFailed"
    if not _REASON.match(reason):
        reason = "BuildFailed"
    message = (summary.message if summary else None) or condition.get("message") or ""
    name = (job.get("metadata") or {}).get("name", "")
    return reason, f"build Job {name} failed: {message}".rstrip(": ")


def engine_from_summary(summary: BuildSummary) -> EngineStatus:
    """status.engine from a successful build's summary."""
    return EngineStatus(
        key=summary.key or "",
        uri=summary.uri,
        engine=summary.engine,
        tensorrt_version=summary.tensorrt_version,
        compute_capability=summary.compute_capability,
        precision=summary.precision,
        accuracy=AccuracyFigures(
            max_abs_error=summary.accuracy.max_abs_error,
            max_rel_error=summary.accuracy.max_rel_error,
            metric=summary.accuracy.metric,
            agreement=summary.accuracy.agreement,
            accuracy=summary.accuracy.accuracy,
            baseline_accuracy=summary.accuracy.baseline_accuracy,
            samples=summary.accuracy.samples,
        )
        if summary.accuracy
        else None,
        quantization=quantization_status(summary.quantization),
        baseline=baseline_status(summary.baseline),
        latency_ms=LatencyFigures(p50=summary.latency_ms.p50, p99=summary.latency_ms.p99)
        if summary.latency_ms
        else None,
        throughput=summary.throughput,
        shapes=[ShapeStatus.from_figures(f) for f in summary.shapes or []] or None,
    )


def engine_from_manifest(manifest: EngineManifest, uri: str | None) -> EngineStatus:
    """status.engine from a store entry (a cache hit: no Job ran for this ModelDeployment)."""
    return engine_from_summary(summary_of(manifest, uri, cached=True))


def store_manifest(entry: Mapping[str, Any] | None, key: str) -> EngineManifest | None:
    """The store entry's manifest when it is valid and for this key, else None."""
    if entry is None:
        return None
    try:
        manifest = EngineManifest.model_validate(entry)
    except ValueError:
        return None
    return manifest if manifest.key == key else None
