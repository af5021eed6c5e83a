"""kmock's KubernetesEmulator made faithful where the operator's correctness depends on it.

What a real API server does and stock kmock does not, all of it here:
- every write is checked and stored under one lock: uid, creationTimestamp and a new
  resourceVersion assigned; a PATCH whose metadata.resourceVersion is not the stored one, and
  a DELETE whose preconditions do not match, are refused (409); a write that changes nothing
  stores nothing and tells no watcher;
- metadata.generation counts spec changes (never status or metadata ones) of the kinds that
  have one; the status subresource is enforced both ways (a write to the object keeps the
  stored status, a write to /status changes nothing else); /scale reads and writes replicas;
- immutable fields are refused (422) and the defaults the operator reads back are filled in
  (tests/support/apiserver_rules.py);
- LIST returns the resourceVersion of its snapshot; a WATCH from that version replays what
  changed since (410 Gone for a version older than the kept history), and subscribes in the
  same step as it takes its snapshot, so no write falls between the two; equality- and
  set-based label selectors filter both (the read side: tests/support/apiserver_watch.py).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import kmock
from kmock._internal.k8s import (
    KubernetesError,
    KubernetesObjectConflictError,
    KubernetesObjectNotFoundError,
)

from tests.support import apiserver_rules as rules
from tests.support.apiserver_watch import BadRequestError, WatchCache

Obj = dict[str, Any]
selector_matches = rules.selector_matches


@attrs.frozen
class InvalidError(KubernetesError):  # type: ignore[misc]
    """422: the server refuses the object (an immutable field changed)."""

    status: int = 422
    reason: str = "Invalid"


def _method(request: kmock.Request) -> str:
    return str(getattr(request.method, "value", request.method)).upper()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FaithfulEmulator(WatchCache, kmock.KubernetesEmulator):  # type: ignore[misc]
    """Writes, generations, subresources, selectors and watches as a real API server does."""

    # Objects shaped like a real server's (tests/support/server_shapes.py `shape_write`):
    # (plural, method, written data, user agent, stored object) -> fills in `written`.
    shape: Callable[[str, str, Obj, str, Obj | None], None] | None = None

    def stored(self, request: kmock.Request) -> Obj | None:
        """The stored object a request names (None when absent or deleted)."""
        if request.resource is None or request.name is None:
            return None
        return self._stored(request.resource, request.namespace, request.name)

    def _stored(self, resource: Any, namespace: str | None, name: str) -> Obj | None:
        try:
            obj = self.objects[resource, namespace, name]
        except KeyError:
            return None
        return None if obj.deleted else obj.last.raw  # type: ignore[no-any-return]

    # --- writes -------------------------------------------------------------------------------
    async def _handle(self, request: kmock.Request) -> Any:
        method = _method(request)
        writes = request.resource is not None and method in ("POST", "PATCH", "PUT", "DELETE")
        if writes:
            await self._write(request, method)
        # kmock's own serving (user reactions, then the fallbacks that read what is stored),
        # without kmock's bookkeeping of writes, which _write does.
        return await super(kmock.KubernetesEmulator, self)._handle(request)

    async def _write(self, request: kmock.Request, method: str) -> None:
        if request.resource.plural in rules.NOT_STORED:
            return
        async with self._lock:
            if method == "POST":
                self._create(request)
            elif method == "DELETE":
                self._delete(request)
            else:
                self._update(request, method)

    def _create(self, request: kmock.Request) -> None:
        body = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
        meta = body.setdefault("metadata", {})
        namespace = request.namespace or meta.get("namespace")
        name = meta.get("name")
        if not name:
            raise InvalidError(message="metadata.name: Required value")
        plural = request.resource.plural
        if self._stored(request.resource, namespace, name) is not None:
            raise KubernetesObjectConflictError(message=f'{plural} "{name}" already exists')
        if namespace is not None:
            meta["namespace"] = namespace
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["resourceVersion"] = self._next_version()
        meta.pop("deletionTimestamp", None)
        if plural in rules.GENERATION:
            meta["generation"] = 1
        if plural in rules.STATUS:
            body["status"] = {"phase": "Pending"} if plural == "pods" else {}
        if self.shape is not None:
            self.shape(plural, "POST", body, _agent(request), None)
        body = rules.with_defaults(plural, body)
        key = (request.resource, namespace, name)
        try:
            self._objects[key].create(body)
        except KeyError:
            self._objects[key] = body
        self._publish(request.resource, "ADDED", body)

    def _update(self, request: kmock.Request, method: str) -> None:
        resource, plural = request.resource, request.resource.plural
        current = self.stored(request)
        if current is None:
            raise KubernetesObjectNotFoundError()
        data = request.data
        if not isinstance(data, dict):
            raise BadRequestError(message="only merge patches (a JSON object) are served")
        meta = current.get("metadata") or {}
        wanted = (data.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and str(wanted) != meta.get("resourceVersion"):
            raise KubernetesObjectConflictError(
                reason="Conflict",
                message=f"the object has been modified (resourceVersion "
                f"{meta.get('resourceVersion')}, not {wanted}); please apply your changes to the "
                "latest version",
            )
        if self.shape is not None:
            data = copy.deepcopy(data)
            self.shape(plural, "PATCH", data, _agent(request), current)
        subresource = request.subresource
        if subresource == "scale":
            if plural not in rules.SCALE:
                raise KubernetesObjectNotFoundError()
            written = rules.scaled(plural, current, data)
        else:
            if subresource not in (None, "", "status") or (
                subresource == "status" and plural not in rules.STATUS
            ):
                raise KubernetesObjectNotFoundError()
            written = rules.merge_patch(current, data) if method == "PATCH" else copy.deepcopy(data)
            written = rules.kept_by_write(plural, current, written, subresource or None)
        new_meta = dict(written.get("metadata") or {})
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
            if fixed in meta:
                new_meta[fixed] = meta[fixed]
        new_meta["resourceVersion"] = meta.get("resourceVersion")
        fields = (data.get("metadata") or {}).get("managedFields")
        if fields is not None:  # the writer's entry, whichever part it wrote
            new_meta["managedFields"] = fields
        new_meta.pop("generation", None)
        if "generation" in meta:
            new_meta["generation"] = meta["generation"]
        written["metadata"] = new_meta
        if plural == "services":  # an update without clusterIP keeps the allocated one
            old_ip = rules.get_path(current, ("spec", "clusterIP"))
            if old_ip and isinstance(written.get("spec"), dict):
                written["spec"].setdefault("clusterIP", old_ip)
        written = rules.with_defaults(plural, written)
        violation = rules.immutable_violation(plural, current, written)
        if violation is not None:
            raise InvalidError(
                message=f'{resource.plural} "{meta.get("name")}" is invalid: {violation}'
            )
        generation = rules.bumped_generation(plural, current, written)
        if generation is not None:
            written["metadata"]["generation"] = generation
        if _unmanaged(written) == _unmanaged(current):
            return  # a no-op write: no new resourceVersion, no event
        written["metadata"]["resourceVersion"] = self._next_version()
        obj = self._objects[resource, request.namespace, request.name]
        if written["metadata"].get("deletionTimestamp") and not written["metadata"].get(
            "finalizers"
        ):
            obj.history.append(written)
            obj.delete()
            self._publish(resource, "DELETED", written)
            return
        obj.history.append(written)
        self._publish(resource, "MODIFIED", written)

    def _delete(self, request: kmock.Request) -> None:
        if request.name is None:
            raise BadRequestError(message="deletecollection is not served")
        current = self.stored(request)
        if current is None:
            raise KubernetesObjectNotFoundError()
        data = request.data if isinstance(request.data, dict) else {}
        pre = data.get("preconditions") or {}
        meta = current.get("metadata") or {}
        for name in ("uid", "resourceVersion"):
            if pre.get(name) is not None and pre[name] != meta.get(name):
                raise KubernetesObjectConflictError(
                    reason="Conflict", message=f"Precondition failed: {name} in precondition"
                )
        obj = self._objects[request.resource, request.namespace, request.name]
        if meta.get("deletionTimestamp"):
            return  # already being deleted
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self._next_version()
        if meta.get("finalizers"):
            gone["metadata"]["deletionTimestamp"] = _now()
            obj.history.append(gone)
            self._publish(request.resource, "MODIFIED", gone)
            return
        obj.history.append(gone)
        obj.delete()
        self._publish(request.resource, "DELETED", gone)

    # --- reads --------------------------------------------------------------------------------
    async def _serve_fetch(self, request: kmock.Request) -> Any:
        if request.subresource == "scale":
            async with self._lock:
                current = self.stored(request)
            if current is None or request.resource.plural not in rules.SCALE:
                raise KubernetesObjectNotFoundError()
            return rules.scale_of(request.resource.plural, current)
        return await super()._serve_fetch(request)

    async def _serve_update(self, request: kmock.Request) -> Any:
        if request.subresource == "scale":
            async with self._lock:
                current = self.stored(request)
            assert current is not None  # written in _handle
            return rules.scale_of(request.resource.plural, current)
        return await super()._serve_update(request)


def _agent(request: kmock.Request) -> str:
    return str(request.headers.get("User-Agent", ""))


def _unmanaged(obj: Obj) -> Obj:
    """The object without managedFields (a write that changes only those changes nothing)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


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
