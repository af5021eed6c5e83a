"""Events of owned children (Jobs, Deployments, pods) re-trigger their ModelDeployment."""

from __future__ import annotations

from typing import Any

import kopf

from ..k8s.resources import DEPLOYMENTS, JOBS, PODS, Resource
from ..render.common import LABEL_DEPLOYMENT, LABEL_MANAGED_BY, LABEL_OWNER_NAMESPACE, MANAGED_BY
from .runtime import Operator

WATCHED: tuple[Resource, ...] = (JOBS, DEPLOYMENTS, PODS)
# ADDED is the echo of our own create (or a restart's replay, which on.resume covers); the
# initial listing has type None. Only changes and deletions say something new.
TRIGGERING = frozenset({"MODIFIED", "DELETED"})


def register(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """Register one on.event handler per watched child kind into `registry`."""
    for res in WATCHED:

        @kopf.on.event(
            res.group,
            res.version,
            res.plural,
            registry=registry,
            labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_DEPLOYMENT: kopf.PRESENT},
            id=res.plural,
        )
        async def child_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
            if event.get("type") not in TRIGGERING:
                return
            label = body.metadata.labels.get(LABEL_DEPLOYMENT)
            if label:
                # A build Job lives in the operator's namespace and names its owner's.
                namespace = body.metadata.labels.get(LABEL_OWNER_NAMESPACE) or (
                    body.metadata.namespace or "default"
                )
                await op.trigger(namespace, op.owner_of(namespace, label))
