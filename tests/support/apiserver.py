"""kmock's KubernetesEmulator made faithful where the operator's correctness depends on it.

A real API server assigns uid and resourceVersion, bumps resourceVersion on every write, refuses
a write whose metadata.resourceVersion (a precondition) is not the stored one (409), refuses a
delete whose preconditions do not match (409), and filters LISTs and WATCHes by labelSelector.
Stock kmock does none of it; the operator tests run against this one.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import kmock
from kmock._internal.k8s import KubernetesObjectConflictError

Obj = dict[str, Any]
_END: Obj = {"type": "END"}  # put on the event buses to end the watch streams


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """An equality-based labelSelector (`a=b,c=d`), as the operator and kopf send them."""
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _method(request: kmock.Request) -> str:
    return str(getattr(request.method, "value", request.method)).upper()


class FaithfulEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """uid, resourceVersion, preconditions and label selectors as a real API server does."""

    _counter: Any = None
    _watch_gate: asyncio.Event | None = None
    watch_starts: int = 0
    bookmark_seconds: float = 60.0
    # Objects shaped like a real server's (tests/support/server_shapes.py `shape_write`).
    shape: Callable[[str, str, Obj, str, Obj | None], None] | None = None

    def hold_watches(self) -> None:
        """New WATCH requests wait (a server restarting) until `release_watches`."""
        self._watch_gate = asyncio.Event()

    def release_watches(self) -> None:
        """Serve WATCH requests again."""
        if self._watch_gate is not None:
            self._watch_gate.set()
        self._watch_gate = None

    async def end_watches(self) -> None:
        """End every open watch stream, as a restarting API server does; clients that come
        back with their resourceVersion are told 410 Gone (too old) and must list again."""
        for bus in list(self._buses.values()):
            await bus.put(_END)

    def _next_version(self) -> str:
        if self._counter is None:
            self._counter = itertools.count(1000)
        return str(next(self._counter))

    def stored(self, request: kmock.Request) -> Obj | None:
        """The stored object a request names (None when absent or deleted)."""
        if request.resource is None or request.name is None:
            return None
        try:
            obj = self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return None
        return None if obj.deleted else obj.last.raw  # type: ignore[no-any-return]

    async def _handle(self, request: kmock.Request) -> Any:
        method = _method(request)
        if request.resource is not None and method in ("POST", "PATCH", "DELETE"):
            self._check_preconditions(request, method)
            self._stamp(request, method)
            if self.shape is not None and isinstance(request.data, dict) and method != "DELETE":
                agent = str(request.headers.get("User-Agent", ""))
                self.shape(
                    request.resource.plural, method, request.data, agent, self.stored(request)
                )
        return await super()._handle(request)

    def _check_preconditions(self, request: kmock.Request, method: str) -> None:
        current = self.stored(request)
        data = request.data if isinstance(request.data, dict) else {}
        if method == "PATCH" and current is not None:
            wanted = (data.get("metadata") or {}).get("resourceVersion")
            have = (current.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != have:
                raise KubernetesObjectConflictError(
                    reason="Conflict",
                    message=f"the object has been modified (resourceVersion {have}, not {wanted})",
                )
        if method == "DELETE" and current is not None:
            pre = data.get("preconditions") or {}
            meta = current.get("metadata") or {}
            for field in ("uid", "resourceVersion"):
                if pre.get(field) is not None and pre[field] != meta.get(field):
                    raise KubernetesObjectConflictError(
                        reason="Conflict", message=f"Precondition failed: {field}"
                    )

    def _stamp(self, request: kmock.Request, method: str) -> None:
        data = request.data
        if isinstance(data, list):  # a JSON patch: stamp it last
            data.append(
                {
                    "op": "replace",
                    "path": "/metadata/resourceVersion",
                    "value": self._next_version(),
                }
            )
            return
        if method == "DELETE" or not isinstance(data, dict):
            return
        meta = data.setdefault("metadata", {})
        if not isinstance(meta, dict):
            return
        meta["resourceVersion"] = self._next_version()
        if method == "POST":
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("generation", 1)

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            payload["items"] = [
                item
                for item in payload["items"]
                if selector_matches(selector, (item.get("metadata") or {}).get("labels") or {})
            ]
        return payload

    async def _serve_watch(self, request: kmock.Request) -> Any:
        # kmock's own, plus what a real server does: label selectors, and the BOOKMARK that
        # ends the initial events of a sendInitialEvents watch (kopf waits for it).
        selector = request.params.get("labelSelector") or ""
        gate = self._watch_gate
        if gate is not None:
            await gate.wait()
        self.watch_starts += 1
        yield b""
        if request.params.get("resourceVersion") and not request.params.get("sendInitialEvents"):
            # kmock keeps no event history: every continuation is "too old".
            yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Gone"}}
            return
        async with self._lock:
            objs = self._KubernetesEmulator__get_objs(request, strict=False)
            events = [{"type": "ADDED", "object": o.raw} for o in objs if not o.deleted]
        for event in events:
            if _selected(event, selector):
                yield event
        if request.params.get("sendInitialEvents") == "true":
            yield _bookmark(request, self._next_version())
        assert request.resource is not None
        events_in = aiter(self._buses[request.resource])
        pending = asyncio.ensure_future(anext(events_in))
        try:
            while True:
                # Like a real server: a BOOKMARK every minute keeps quiet streams alive.
                done, _ = await asyncio.wait({pending}, timeout=self.bookmark_seconds)
                if not done:
                    yield _bookmark(request, self._next_version(), initial=False)
                    continue
                event = pending.result()
                pending = asyncio.ensure_future(anext(events_in))
                if event is _END:
                    return
                meta = (event.get("object") or {}).get("metadata") or {}
                check = self._KubernetesEmulator__check
                namespace, name = meta.get("namespace"), meta.get("name")
                ours = check(request, request.resource, namespace, name, False)
                if ours and _selected(event, selector):
                    yield event
        finally:
            pending.cancel()


def _selected(event: Obj, selector: str) -> bool:
    labels = ((event.get("object") or {}).get("metadata") or {}).get("labels") or {}
    return not selector or selector_matches(selector, labels)


def _bookmark(request: kmock.Request, version: str, *, initial: bool = True) -> Obj:
    annotations = {"k8s.io/initial-events-end": "true"} if initial else {}
    return {
        "type": "BOOKMARK",
        "object": {"metadata": {"resourceVersion": version, "annotations": annotations}},
    }


async def collect_garbage(
    api: kmock.KubernetesEmulator, agent: str = "modelops-tests-gc"
) -> list[str]:
    """What Kubernetes' garbage collector does (kmock has none): delete every object whose
    controller owner no longer exists, until none is left; returns "plural/name" of each."""
    deleted: list[str] = []
    while True:
        live = {
            (obj.last.raw.get("metadata") or {}).get("uid")
            for obj in api.objects.values()
            if not obj.deleted
        }
        orphans = []
        for (resource, namespace, name), obj in api.objects.items():
            if obj.deleted:
                continue
            refs = (obj.last.raw.get("metadata") or {}).get("ownerReferences") or []
            owner = next((r.get("uid") for r in refs if r.get("controller")), None)
            if owner is not None and owner not in live:
                orphans.append((resource, namespace, name))
        if not orphans:
            return deleted
        for resource, namespace, name in orphans:
            prefix = f"/apis/{resource.group}/{resource.version}" if resource.group else "/api/v1"
            path = f"{prefix}/namespaces/{namespace}/{resource.plural}/{name}"
            resp = await api.request("DELETE", path, headers={"User-Agent": agent})
            async with resp:
                assert resp.status < 300, f"DELETE {path}: {resp.status}"
            deleted.append(f"{resource.plural}/{name}")
