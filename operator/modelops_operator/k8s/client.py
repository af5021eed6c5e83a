"""A thin async Kubernetes API client on aiohttp: the only place that speaks HTTP to the API."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..decide.writes import apply_patch_of, merged
from .errors import (
    TRANSIENT_STATUSES,
    ApiError,
    ConflictError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
    error_for,
)
from .resources import PODS, Resource, resource_for

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
# (apiGroup, resource or resource/subresource, RBAC verb): what one request needs from RBAC.
ApiCall = tuple[str, str, str]
MERGE_PATCH = "application/merge-patch+json"
# A write based on a stale read is read again and retried this often before giving up.
CONFLICT_RETRIES = 4


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to authenticate to it."""

    server: str
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl: ssl.SSLContext | bool = True
    default_namespace: str | None = None

    @classmethod
    def from_connection_info(cls, info: Any) -> Credentials:
        """From a kopf.ConnectionInfo: its own TLS and header logic, so kopf and we agree."""
        context: ssl.SSLContext | bool = True
        if str(info.server).startswith("https://"):
            context = info.as_ssl_context()
        return cls(
            server=str(info.server).rstrip("/"),
            headers=dict(info.as_http_headers()),
            ssl=context,
            default_namespace=info.default_namespace,
        )


Connect = Callable[[], Awaitable[Credentials]]
# Called before every write except to the leader Lease: raises when this process may not write.
WriteGuard = Callable[[Resource], None]
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def labels_match(obj: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Equality-based label selector, evaluated client-side too (kmock ignores labelSelector)."""
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


class KubeClient:
    """get/list/create/patch/delete with retries on 429/5xx/connection errors and typed errors."""

    def __init__(
        self,
        connect: Connect,
        *,
        retries: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        timeout: float = 30.0,
        user_agent: str = "modelops-operator",
        guard: WriteGuard | None = None,
    ) -> None:
        self._connect = connect
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._user_agent = user_agent
        self.guard = guard
        self._credentials: Credentials | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        # Every call made, by what RBAC it needs: tests check these against REQUIRED_RULES.
        self.calls: Counter[ApiCall] = Counter()
        self.requests = 0

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- reads ----------------------------------------------------------------------------------
    async def get(self, resource: Resource, namespace: str | None, name: str) -> JsonDict:
        """One object; NotFoundError when absent."""
        return await self._call("GET", resource, "get", namespace, name)

    async def get_or_none(
        self, resource: Resource, namespace: str | None, name: str
    ) -> JsonDict | None:
        """One object, or None when absent."""
        try:
            return await self.get(resource, namespace, name)
        except NotFoundError:
            return None

    async def list(
        self,
        resource: Resource,
        namespace: str | None,
        labels: Mapping[str, str] | None = None,
        *,
        fields: Mapping[str, str] | None = None,
    ) -> list[JsonDict]:
        """Objects of a namespace (or the cluster) matching every label given; `fields` is a
        fieldSelector the server applies (callers check the fields again: not every server
        supports every field)."""
        params = {}
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        if fields:
            params["fieldSelector"] = ",".join(f"{k}={v}" for k, v in sorted(fields.items()))
        body = await self._call("GET", resource, "list", namespace, params=params)
        items: list[JsonDict] = [i for i in body.get("items") or [] if isinstance(i, dict)]
        return [i for i in items if labels_match(i, labels or {})]

    async def read_log(
        self, namespace: str, pod: str, container: str, tail_lines: int | None = None
    ) -> str:
        """A container's log (pods/log), the last `tail_lines` lines when given."""
        params = {"container": container}
        if tail_lines is not None:
            params["tailLines"] = str(tail_lines)
        return await self._send(
            "GET", PODS, "get", namespace, pod, subresource="log", params=params
        )

    # --- writes ---------------------------------------------------------------------------------
    async def create(
        self, resource: Resource, namespace: str | None, body: Mapping[str, Any]
    ) -> JsonDict:
        """POST a new object; ConflictError when it exists already."""
        return await self._call("POST", resource, "create", namespace, body=body)

    async def merge_patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> JsonDict:
        """RFC 7386 merge-patch of one object; with `resource_version`, only of that version
        (ConflictError when the object changed since)."""
        if resource_version is not None:
            meta = {**(patch.get("metadata") or {}), "resourceVersion": resource_version}
            patch = {**patch, "metadata": meta}
        return await self._call("PATCH", resource, "patch", namespace, name, body=patch)

    async def patch_status(
        self, resource: Resource, namespace: str | None, name: str, status_patch: Mapping[str, Any]
    ) -> JsonDict:
        """Merge-patch the status subresource; the main object where there is no subresource."""
        body = {"status": status_patch}
        try:
            return await self._call(
                "PATCH", resource, "patch", namespace, name, subresource="status", body=body
            )
        except NotFoundError:
            # A CRD without the status subresource answers 404 on /status: the object itself
            # then carries the status. A missing object 404s again here, which is the truth.
            return await self.merge_patch(resource, namespace, name, body)

    async def delete(
        self, resource: Resource, namespace: str | None, name: str, *, uid: str | None = None
    ) -> bool:
        """Delete in the background (children go by GC); False when it was already gone.

        With `uid`, only that object: a newer one of the same name answers ConflictError.
        """
        options: JsonDict = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        }
        if uid:
            options["preconditions"] = {"uid": uid}
        try:
            await self._call("DELETE", resource, "delete", namespace, name, body=options)
        except NotFoundError:
            return False
        return True

    async def apply(
        self,
        manifest: Mapping[str, Any],
        namespace: str,
        existing: Mapping[str, Any] | None = None,
    ) -> tuple[JsonDict, str]:
        """Create the manifest; when it exists, merge-patch its owned fields if they differ.

        `existing` is what the caller believes is stored (a cached copy): the patch carries its
        resourceVersion, so a stale belief answers 409 and is read again instead of written
        over; a belief in an object that is gone creates it. Returns the object and what
        happened: "created", "patched" or "unchanged".
        """
        resource = resource_for(manifest["apiVersion"], manifest["kind"])
        name = manifest["metadata"]["name"]
        patch = apply_patch_of(manifest)
        for _ in range(CONFLICT_RETRIES):
            if existing is None:
                try:
                    return await self.create(resource, namespace, manifest), "created"
                except ConflictError:
                    existing = await self.get(resource, namespace, name)
            if merged(existing, patch) == existing:
                return dict(existing), "unchanged"
            version = (existing.get("metadata") or {}).get("resourceVersion")
            try:
                done = await self.merge_patch(
                    resource, namespace, name, patch, resource_version=version
                )
            except ConflictError:
                existing = await self.get(resource, namespace, name)  # changed since: re-read
                continue
            except NotFoundError:
                existing = None  # deleted since: create it
                continue
            return done, "patched"
        raise ConflictError(
            409, "Conflict", f"{name} kept changing", method="PATCH", path=resource.path(namespace)
        )

    # --- plumbing -------------------------------------------------------------------------------
    async def _ensure(self) -> tuple[aiohttp.ClientSession, Credentials]:
        async with self._lock:
            if self._credentials is None:
                self._credentials = await self._connect()
            if self._session is None or self._session.closed:
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=64),
                    timeout=self._timeout,
                    headers={"User-Agent": self._user_agent, "Accept": "application/json"},
                )
            return self._session, self._credentials

    async def _call(
        self,
        method: str,
        resource: Resource,
        verb: str,
        namespace: str | None,
        name: str | None = None,
        *,
        subresource: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        text = await self._send(
            method, resource, verb, namespace, name,
            subresource=subresource, params=params, body=body,
        )  # fmt: skip
        parsed = _parse_json(text)
        return parsed if isinstance(parsed, dict) else {}

    async def _send(
        self,
        method: str,
        resource: Resource,
        verb: str,
        namespace: str | None,
        name: str | None = None,
        *,
        subresource: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> str:
        """One request, retried on transient failures: the response's text, or a typed error."""
        if method in WRITE_METHODS and self.guard is not None:
            self.guard(resource)
        path = resource.path(namespace, name, subresource)
        rbac_resource = f"{resource.plural}/{subresource}" if subresource else resource.plural
        self.calls[(resource.group, rbac_resource, verb)] += 1
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        content_type = MERGE_PATCH if method == "PATCH" else "application/json"
        reauthenticated = False
        attempt = 0
        while True:
            if attempt and method in WRITE_METHODS and self.guard is not None:
                self.guard(resource)  # a retry after a backoff: still allowed to write?
            session, creds = await self._ensure()
            headers = {**creds.headers, "Content-Type": content_type}
            self.requests += 1
            try:
                async with session.request(
                    method,
                    creds.server + path,
                    params=params,
                    data=data,
                    headers=headers,
                    ssl=creds.ssl,
                ) as resp:
                    status = resp.status
                    text = await resp.text()
                    retry_after = resp.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt >= self._retries:
                    raise UnavailableError(
                        0,
                        type(exc).__name__,
                        str(exc) or "connection failed",
                        method=method,
                        path=path,
                    ) from exc
                await self._sleep(attempt, None)
                attempt += 1
                continue
            if status < 300:
                return text
            error = error_for(status, _parse_json(text), method=method, path=path)
            if isinstance(error, UnauthorizedError) and not reauthenticated:
                # Tokens rotate (bound ServiceAccount tokens expire): re-read them once.
                reauthenticated = True
                async with self._lock:
                    self._credentials = None
                continue
            if status in TRANSIENT_STATUSES and attempt < self._retries:
                await self._sleep(attempt, retry_after)
                attempt += 1
                continue
            raise error

    async def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self._max_backoff, self._backoff * (2**attempt))
        delay *= 0.5 + random.random()  # noqa: S311 - jitter, not cryptography
        if retry_after is not None and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), self._max_backoff * 4))
        await asyncio.sleep(delay)


def _parse_json(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


__all__ = [
    "ApiCall",
    "ApiError",
    "Connect",
    "Credentials",
    "KubeClient",
    "WriteGuard",
    "labels_match",
]
