"""Carry out a Plan: Apply/Delete/Emit in order, then the status patch if the status changed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..decide.clock import rfc3339
from ..decide.inputs import Observed
from ..decide.plan import Apply, Delete, Emit, EventReason, Plan
from ..decide.status import rejected_status
from ..decide.writes import unchanged, with_applied_hash
from ..observability import log_ref
from .cache import ChildCache
from .client import KubeClient
from .errors import ApiError, BadRequestError, ConflictError, ForbiddenError, InvalidError
from .events import EventRecorder
from .resources import (
    DEPLOYMENTS,
    GRPCROUTES,
    HTTPROUTES,
    JOBS,
    MODELDEPLOYMENTS,
    SERVICES,
    resource_for,
)

logger = logging.getLogger(__name__)

# Status keys written by others (kopf's progress storage, if ever enabled) are never removed.
FOREIGN_STATUS_KEYS = frozenset({"kopf"})


@dataclass
class Applied:
    """What one plan did, for logs and metrics."""

    created: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    status_patched: bool = False

    @property
    def changed(self) -> bool:
        """Whether any write happened (events excluded)."""
        return self.children_changed or self.status_patched

    @property
    def children_changed(self) -> bool:
        """Whether a child object was created, patched or deleted."""
        return bool(self.created or self.patched or self.deleted)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge-patch that turns status `old` into `new` (removed keys become null)."""
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new and key not in FOREIGN_STATUS_KEYS:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub = status_patch(before, value)
            if sub:
                patch[key] = sub
        elif before != value:
            patch[key] = value
    return patch


def _known(observed: Observed, kind: str, name: str) -> Mapping[str, Any] | None:
    """The observed object a manifest would write, when the observation has it whole."""
    if kind == JOBS.kind:
        return (
            observed.jobs.get(name)
            or observed.validation_jobs.get(name)
            or observed.build_jobs.get(name)
        )
    if kind == DEPLOYMENTS.kind:
        router = observed.router
        if router is not None and (router.get("metadata") or {}).get("name") == name:
            return router
        return observed.deployments.get(name)
    if kind == SERVICES.kind:
        return observed.services.get(name)
    if kind in (HTTPROUTES.kind, GRPCROUTES.kind):
        return observed.routes.get(f"{kind}/{name}")
    return None


class Applier:
    """Applies plans through the client and the event recorder; what it writes goes into the
    cache at once, so the next reconcile reads it even before the watch event arrives."""

    def __init__(self, client: KubeClient, events: EventRecorder, cache: ChildCache) -> None:
        self._client = client
        self._events = events
        self._cache = cache

    async def apply(
        self,
        body: Mapping[str, Any],
        observed: Observed,
        plan: Plan,
        on_status: Callable[[], None] | None = None,
    ) -> Applied:
        """Every write in order; then the status, only when it differs from the body's; then
        `on_status` (the route feed publishes the new table) and the plan's Events.

        Events come last: they are reports, and a route table or a wake must not wait for
        them (the recorder logs a failed Event and goes on)."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        log = log_ref(namespace, name)
        done = Applied()
        status = plan.status
        events: list[Emit] = []
        for action in plan.actions:
            if isinstance(action, Apply):
                try:
                    await self._apply(namespace, observed, action.manifest, done, log)
                except (InvalidError, ForbiddenError, BadRequestError) as exc:
                    # The user can fix this (a field, a quota): say so on the ModelDeployment
                    # instead of retrying silently; the rest of the plan waits for the fix.
                    what = f"{action.manifest['kind']}/{action.manifest['metadata']['name']}"
                    status = await self._rejected(body, what, exc, log)
                    break
            elif isinstance(action, Delete):
                await self._delete(action.namespace or namespace, action, done, log)
            elif isinstance(action, Emit):
                events.append(action)
        old = body.get("status") or {}
        patch = status_patch(old, status)
        if patch:
            await self._client.patch_status(MODELDEPLOYMENTS, namespace, name, patch)
            done.status_patched = True
            logger.debug("status patched: %s", sorted(patch), extra=log)
        if on_status is not None:
            on_status()
        for event in events:
            await self._events.emit(body, event.type, event.reason, event.message)
            done.events.append(event.reason)
        return done

    async def _rejected(
        self, body: Mapping[str, Any], what: str, exc: ApiError, log: Mapping[str, Any]
    ) -> dict[str, Any]:
        meta = body.get("metadata") or {}
        logger.warning("the API server rejected %s: %s", what, exc.message, extra=log)
        message = f"the API server rejected {what}: {exc.message}"
        await self._events.emit(body, "Warning", EventReason.CHILD_REJECTED, message)
        return rejected_status(
            body.get("status") or {},
            what,
            exc.message,
            rfc3339(datetime.now(UTC)),
            meta.get("generation"),
        )

    async def _apply(
        self,
        namespace: str,
        observed: Observed,
        manifest: Mapping[str, Any],
        done: Applied,
        log: Mapping[str, Any],
    ) -> None:
        kind, child = manifest["kind"], manifest["metadata"]["name"]
        # Build Jobs name the operator's namespace; every other child lives beside its owner.
        namespace = manifest["metadata"].get("namespace") or namespace
        res = resource_for(manifest["apiVersion"], kind)
        existing = _known(observed, kind, child)
        if existing is None:
            # Observed keeps only ConfigMap names: their content comes from the cache.
            existing = self._cache.kind(res).get(namespace, child)
        if unchanged(existing, manifest):
            return
        annotated, _ = with_applied_hash(manifest)
        stored, outcome = await self._client.apply(annotated, namespace, existing)
        self._cache.observed(res, stored)
        if outcome != "unchanged":
            (done.created if outcome == "created" else done.patched).append(f"{kind}/{child}")
            logger.info("%s %s/%s", outcome, kind, child, extra=log)

    async def _delete(
        self, namespace: str, action: Delete, done: Applied, log: Mapping[str, Any]
    ) -> None:
        res = resource_for(action.api_version, action.kind)
        cached = self._cache.kind(res).get(namespace, action.name)
        uid = (cached.get("metadata") or {}).get("uid") if cached is not None else None
        try:
            gone = await self._client.delete(res, namespace, action.name, uid=uid)
        except ConflictError:
            # Another object of that name (made after the cached one): not the one decided on.
            logger.info("not deleted %s/%s: replaced since", action.kind, action.name, extra=log)
            return
        if cached is not None:
            self._cache.deleted(res, cached)
        if gone:
            done.deleted.append(f"{action.kind}/{action.name}")
            logger.info("deleted %s/%s", action.kind, action.name, extra=log)
