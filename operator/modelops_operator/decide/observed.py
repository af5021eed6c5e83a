"""What the k8s layer observed for one ModelDeployment, and the context of the decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api import (
    MetricsStatus,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ObjectMeta,
    format_validation_error,
)
from ..render.common import (
    ANNOTATION_ENGINE_KEY,
    ANNOTATION_GENERATION,
    ANNOTATION_RETRY,
    ANNOTATION_SERVING_HASH,
    LABEL_REVISION,
)
from ..settings import Settings
from .autoscale import ScaleDecision

CRASH_LOOP_RESTARTS = 3


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time, or None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def rfc3339(moment: datetime) -> str:
    """A timestamp as Kubernetes writes them (seconds, Z)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Observed:
    """Children owned by the ModelDeployment as the API server returned them.

    jobs: build Jobs by name; a terminated builder's termination message is attached by the
    k8s layer as job["status"]["terminationMessage"]. deployments: revision Deployments by name
    (with status). pods: the pods of each revision Deployment, by Deployment name. configmaps:
    names of the revision ConfigMaps. service: the Service, or None. store_entry: engine.json of
    the desired engine key when the store holds a complete entry for it, else None.
    """

    jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    deployments: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    pods: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    configmaps: frozenset[str] = frozenset()
    service: dict[str, Any] | None = None
    store_entry: dict[str, Any] | None = None


@dataclass(frozen=True)
class DecideContext:
    """The clock, the operator settings and the latest canary analyses.

    analyses maps a revision number to the result of ONE new canary analysis of it (any object
    with `.verdict` "pass"/"fail"/"inconclusive" and `.message` or `.reasons`); each result is
    counted once, so the caller passes it only to the reconcile that follows the analysis.
    analysis_enabled says that such analyses are being fed: readiness held for one
    analysisIntervalSeconds then no longer advances a canary step on its own.
    scale is the autoscaler's newest decision (applied once, only if it was made against the
    replica count reconcile still sees); metrics is the newest status.metrics (None: keep).
    """

    now: datetime
    settings: Settings
    analyses: Mapping[int, Any] = field(default_factory=dict)
    analysis_enabled: bool = False
    scale: ScaleDecision | None = None
    metrics: MetricsStatus | None = None


@dataclass(frozen=True)
class RevisionView:
    """One observed revision Deployment, read through its labels, annotations and status."""

    number: int
    name: str
    key: str
    serving_hash: str
    generation: int
    retry: str
    replicas: int
    ready: int
    up_to_date: bool
    deployment: Mapping[str, Any]
    pods: tuple[Mapping[str, Any], ...] = ()

    def ready_at(self, target: int) -> bool:
        """True when the Deployment runs `target` replicas and all of them are ready."""
        return self.up_to_date and self.replicas == target and self.ready >= target


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def view_revision(name: str, deployment: Mapping[str, Any], pods: Sequence[Any]) -> RevisionView:
    """A RevisionView of a Deployment (revision -1 when it carries no revision label)."""
    meta = deployment.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    status = deployment.get("status") or {}
    observed_gen = status.get("observedGeneration")
    generation = meta.get("generation")
    # The Deployment controller has not seen the latest spec yet: its counts are stale.
    up_to_date = observed_gen is None or generation is None or observed_gen >= generation
    return RevisionView(
        number=_int(labels.get(LABEL_REVISION), -1),
        name=name,
        key=annotations.get(ANNOTATION_ENGINE_KEY, ""),
        serving_hash=annotations.get(ANNOTATION_SERVING_HASH, ""),
        generation=_int(annotations.get(ANNOTATION_GENERATION)),
        retry=annotations.get(ANNOTATION_RETRY, ""),
        replicas=_int((deployment.get("spec") or {}).get("replicas"), 1),
        ready=_int(status.get("readyReplicas")),
        up_to_date=up_to_date,
        deployment=deployment,
        pods=tuple(pods),
    )


def revision_views(observed: Observed) -> dict[int, RevisionView]:
    """Every observed revision Deployment by revision number."""
    views = (
        view_revision(name, dep, observed.pods.get(name, []))
        for name, dep in sorted(observed.deployments.items())
    )
    return {v.number: v for v in views if v.number >= 0}


def crash_loop(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """A message naming the crash-looping container, or None."""
    for pod in pods:
        status = pod.get("status") or {}
        pod_name = (pod.get("metadata") or {}).get("name", "?")
        for cs in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            restarts = _int(cs.get("restartCount"))
            waiting = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            if restarts >= CRASH_LOOP_RESTARTS or waiting == "CrashLoopBackOff":
                last = ((cs.get("lastState") or {}).get("terminated") or {}).get("reason")
                detail = f", last exit: {last}" if last else ""
                state = f", {waiting}" if waiting else ""
                return (
                    f"pod {pod_name} container {cs.get('name', '?')} restarted {restarts} times "
                    f"(limit {CRASH_LOOP_RESTARTS}){state}{detail}"
                )
    return None


def ready_since(candidate: RevisionView, fallback: datetime) -> datetime:
    """When the last of the candidate's pods became Ready (never before `fallback`)."""
    latest = fallback
    for pod in candidate.pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready" and cond.get("status") == "True":
                moment = parse_time(cond.get("lastTransitionTime"))
                if moment is not None and moment > latest:
                    latest = moment
    return latest


def parse_body(
    body: Mapping[str, Any],
) -> ModelDeployment | tuple[ObjectMeta, ModelDeploymentStatus, str]:
    """The ModelDeployment, or (metadata, status, message) when the spec is invalid."""
    meta = ObjectMeta.model_validate(body.get("metadata") or {})
    try:
        status = ModelDeploymentStatus.model_validate(body.get("status") or {})
    except ValidationError:
        # The status is the operator's own; an unreadable one is rebuilt, never a user error.
        status = ModelDeploymentStatus()
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return meta, status, format_validation_error(exc)
    return ModelDeployment(metadata=meta, spec=spec, status=status)
