"""One observed revision Deployment, read through its labels, annotations and status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..render.common import (
    ANNOTATION_ENGINE_KEY,
    ANNOTATION_GENERATION,
    ANNOTATION_MANIFEST_SHA256,
    ANNOTATION_RETRY,
    ANNOTATION_SERVING_HASH,
    LABEL_REVISION,
)
from .inputs import Observed


@dataclass(frozen=True)
class RevisionView:
    """A revision Deployment as the decision needs it."""

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
    manifest_sha256: str = ""  # the engine.json its pods are pinned to ("" before 0.3)

    def ready_at(self, target: int) -> bool:
        """True when the Deployment runs `target` replicas and all of them are ready."""
        return self.up_to_date and self.replicas == target and self.ready >= target


def as_int(value: Any, default: int = 0) -> int:
    """An integer from an API field that may be absent or malformed."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def view_revision(name: str, deployment: Mapping[str, Any], pods: Sequence[Any]) -> RevisionView:
    """A RevisionView of a Deployment (revision -1 when it carries no revision label)."""
    meta = deployment.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    status = deployment.get("status") or {}
    observed_generation = status.get("observedGeneration")
    generation = meta.get("generation")
    # The Deployment controller has not seen the latest spec yet: its counts are stale.
    up_to_date = (
        observed_generation is None or generation is None or observed_generation >= generation
    )
    return RevisionView(
        number=as_int(labels.get(LABEL_REVISION), -1),
        name=name,
        key=annotations.get(ANNOTATION_ENGINE_KEY, ""),
        serving_hash=annotations.get(ANNOTATION_SERVING_HASH, ""),
        generation=as_int(annotations.get(ANNOTATION_GENERATION)),
        retry=annotations.get(ANNOTATION_RETRY, ""),
        replicas=as_int((deployment.get("spec") or {}).get("replicas"), 1),
        ready=as_int(status.get("readyReplicas")),
        up_to_date=up_to_date,
        deployment=deployment,
        pods=tuple(pods),
        manifest_sha256=annotations.get(ANNOTATION_MANIFEST_SHA256, ""),
    )


def revision_views(observed: Observed) -> dict[int, RevisionView]:
    """Every observed revision Deployment by revision number."""
    views = (
        view_revision(name, deployment, observed.pods.get(name, []))
        for name, deployment in sorted(observed.deployments.items())
    )
    return {view.number: view for view in views if view.number >= 0}
