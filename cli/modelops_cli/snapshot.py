"""What `kubectl modelops get` and `list` read: one ModelDeployment and the objects it owns.

Every read is a get or a list in the ModelDeployment's namespace (what `kubectl get` users of
that namespace may do), except the build Job, which runs in the operator's release namespace:
it is shown when readable and otherwise named as not readable, never an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelops_operator.k8s.client import KubeClient
from modelops_operator.k8s.errors import ApiError
from modelops_operator.k8s.resources import DEPLOYMENTS, EVENTS, JOBS, MODELDEPLOYMENTS, PODS
from modelops_operator.render.common import (
    LABEL_COMPONENT,
    LABEL_DEPLOYMENT,
    LABEL_OWNER_NAMESPACE,
    owner_labels,
)
from modelops_operator.render.names import label_value

Obj = dict[str, Any]
EVENTS_SHOWN = 6
EVENT_FIELDS = {"involvedObject.kind": "ModelDeployment"}


@dataclass(frozen=True)
class Snapshot:
    """One ModelDeployment and its children as read now."""

    md: Obj
    deployments: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    jobs: list[Obj] = field(default_factory=list)
    build_job: Obj | None = None
    build_note: str = ""
    events: list[Obj] = field(default_factory=list)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


def build_job_labels(namespace: str, name: str) -> dict[str, str]:
    """The labels of a ModelDeployment's build Jobs in the release namespace."""
    return {**owner_labels(name), LABEL_OWNER_NAMESPACE: namespace, LABEL_COMPONENT: "build"}


async def _build_job(
    client: KubeClient, namespace: str, name: str, release_namespace: str
) -> tuple[Obj | None, str]:
    """The newest build Job of the ModelDeployment in the release namespace, or why none."""
    try:
        found = await client.list(JOBS, release_namespace, build_job_labels(namespace, name))
    except ApiError as exc:
        return None, f"build Jobs not readable in {release_namespace}: {exc.reason}"
    if not found:
        return None, f"no build Job in {release_namespace} (none ran, or it expired)"
    return max(found, key=lambda j: str(j["metadata"].get("creationTimestamp") or "")), ""


def _events_of(events: list[Obj], name: str) -> list[Obj]:
    mine = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("kind") == "ModelDeployment"
        and (e.get("involvedObject") or {}).get("name") == name
    ]
    mine.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return mine[-EVENTS_SHOWN:]


async def read_snapshot(
    client: KubeClient, namespace: str, name: str, release_namespace: str
) -> Snapshot:
    """The ModelDeployment (NotFoundError when absent) and what it owns."""
    md = await client.get(MODELDEPLOYMENTS, namespace, name)
    labels = owner_labels(name)
    deployments, pods, jobs, events, (build_job, note) = await asyncio.gather(
        client.list(DEPLOYMENTS, namespace, labels),
        client.list(PODS, namespace, {LABEL_DEPLOYMENT: label_value(name)}),
        client.list(JOBS, namespace, labels),
        client.list(EVENTS, namespace, fields=EVENT_FIELDS | {"involvedObject.name": name}),
        _build_job(client, namespace, name, release_namespace),
    )
    return Snapshot(md, deployments, pods, jobs, build_job, note, _events_of(events, name))


async def read_all(client: KubeClient, namespace: str | None) -> list[Obj]:
    """Every ModelDeployment of the namespace (None: of every namespace)."""
    return await client.list(MODELDEPLOYMENTS, namespace)
