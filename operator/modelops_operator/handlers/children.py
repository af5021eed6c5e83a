"""kopf's watch streams of the children feed the cache (k8s/cache.py) and re-trigger owners.

Each child kind gets a kopf index handler, which kopf runs for every listed and changed object
BEFORE any other handler may run: at startup no reconcile starts until every kind is listed and
cached, so a resumed ModelDeployment never mistakes an unlisted child for a missing one. The
index itself stays empty (the handler returns None): the cache indexes by owner. DELETED events
(kopf discards those from indexes without calling the handler) come through on.event.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..k8s.resources import CHILD_RESOURCES, Resource
from ..render.common import (
    LABEL_BUILD_FOR,
    LABEL_DEPLOYMENT,
    LABEL_MANAGED_BY,
    LABEL_OWNER_NAMESPACE,
    MANAGED_BY,
)
from .runtime import Operator

WATCHED: tuple[Resource, ...] = CHILD_RESOURCES
# ADDED is the echo of our own create (already cached at write time) or a new pod that is not
# ready yet; a restart's listing has type None. Only changes and deletions say something new.
TRIGGERING = frozenset({"MODIFIED", "DELETED"})


def register(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """Register one index (the cache feed) and one on.event handler per watched child kind."""
    for res in WATCHED:
        _register_kind(registry, op, res)


def _register_kind(registry: kopf.OperatorRegistry, op: Operator, res: Resource) -> None:
    selector = {LABEL_MANAGED_BY: MANAGED_BY}

    @kopf.index(
        res.group,
        res.version,
        res.plural,
        registry=registry,
        labels=selector,
        id=f"{res.plural}-cache",
    )
    async def cache_child(body: kopf.Body, **_: Any) -> None:
        op.cache.observed(res, body)

    @kopf.on.event(
        res.group, res.version, res.plural, registry=registry, labels=selector, id=res.plural
    )
    async def child_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        kind = event.get("type")
        if kind == "DELETED":
            op.cache.deleted(res, body)
        if kind not in TRIGGERING:
            return
        labels = body.metadata.labels
        label = labels.get(LABEL_DEPLOYMENT) or labels.get(LABEL_BUILD_FOR)
        if label:
            # A build Job and its pods live in the operator's namespace and name their owner's.
            namespace = labels.get(LABEL_OWNER_NAMESPACE) or body.metadata.namespace or "default"
            await op.trigger(namespace, op.owner_of(namespace, label))
