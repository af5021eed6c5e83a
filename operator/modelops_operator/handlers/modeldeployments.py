"""kopf's watch of ModelDeployments: every replica keeps the newest bodies (the route feed
answers from them); the leader reconciles when something other than status changed.

Only a watching handler (kopf.on.event): kopf never writes to a ModelDeployment, so it adds no
finalizer (deleting one never waits for the operator), no progress or last-handled annotations,
and two replicas never race on kopf's bookkeeping. Reconciles, retries and the safety net are
scheduled by the runtime (handlers/scheduler.py) on the Lease holder only.
"""

from __future__ import annotations

from typing import Any

import kopf

from ..api import GROUP, PLURAL, VERSION
from .build_jobs import delete_for
from .runtime import Operator


def register(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """Register the ModelDeployment watch handler into `registry`."""

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="event")
    async def md_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        if event.get("type") == "DELETED":
            namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
            op.forget(namespace, name)
            # Its build Jobs run in the operator's namespace, out of the garbage collector's reach.
            await delete_for(op, (namespace, name, body.metadata.uid or ""))
        else:
            op.seen(body)
