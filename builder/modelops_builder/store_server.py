"""`modelops-build serve-store`: the engine server, in the operator's namespace.

Tenants never touch the store: this small HTTP server is their only way to it, and it can do
three things, each only with the token the operator minted for it (modelops_contract.integrity):

- GET /entries/<digest>/<path>: a file of a complete entry, and only a file engine.json lists
  (Triton pods and validation Jobs; they check every byte themselves against the digest the
  operator pinned). Read-only: nothing here writes to the store.
- PUT /sources/<sha256>?keep=&max=&ns=&expires=: a source Job streams a model; the bytes are
  hashed as they arrive and kept (keep=1, in the inbox, for the build Job) only when their
  sha256 is the one in the URL; the answer is a receipt the operator checks before it builds or
  uses a stored engine. keep, the size limit, the tenant's namespace and the expiry are all in
  the token's scope.
- GET and DELETE /sources/<sha256>?owner=<uid>: the build Job of that ModelDeployment reads
  (then drops) its staged source.

One tenant cannot take the server down for the others (inbox.py): an upload reserves its bytes
against its namespace's quota and the server's, and takes an upload slot of each, before a byte
is written; it must keep sending (a read timeout) at a minimum rate, or it is cut. Staged
sources are swept after `inbox_ttl` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from modelops_contract import integrity
from modelops_contract.layout import MANIFEST_NAME
from modelops_contract.manifest import EngineManifest
from modelops_contract.staging import ENTRIES_PATH, OWNER_HEADER, SOURCES_PATH

from .errors import BuildError
from .inbox import Inbox, Lease, QuotaExceeded, Quotas
from .store import Store

log = logging.getLogger(__name__)

TRANSFER_KEY_ENV = integrity.TRANSFER_KEY_ENV
CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OWNER = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NUMBER = re.compile(r"^[0-9]{1,15}$")


@dataclass(frozen=True)
class ServerConfig:
    """What the server serves from and how much it accepts."""

    store: Store
    inbox: Path
    transfer_key: bytes
    max_source_bytes: int = 20 * 1024**3
    inbox_ttl_seconds: float = 6 * 3600.0
    quotas: Quotas = field(default_factory=Quotas)
    # An upload that sends nothing for this long, or less than min_upload_rate bytes a second
    # on average after the first read_timeout_seconds, is cut.
    read_timeout_seconds: float = 30.0
    min_upload_rate: int = 64 * 1024


def _json_error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"reason": reason, "message": message}, status=status)


def _bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


class StoreServer:
    """The aiohttp application of the engine server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.inbox = Inbox(config.inbox, config.quotas)
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def app(self) -> web.Application:
        """The routes, and the inbox sweeper for the application's lifetime."""
        app = web.Application(client_max_size=1024**2)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get(ENTRIES_PATH + "/{digest}/{path:.+}", self.get_entry_file)
        app.router.add_put(SOURCES_PATH + "/{sha}", self.put_source)
        app.router.add_get(SOURCES_PATH + "/{sha}", self.get_source)
        app.router.add_delete(SOURCES_PATH + "/{sha}", self.delete_source)
        app.cleanup_ctx.append(self._sweeper)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        """Alive (the store is read per request: an unreachable store answers 503 there)."""
        return web.Response(text="ok\n")

    async def metrics(self, _: web.Request) -> web.Response:
        """Prometheus page: the process's figures; a failing scrape (`up` 0) pages on-call."""
        return web.Response(body=generate_latest(self.registry), content_type="text/plain")

    # --- entries (read-only) ------------------------------------------------------------------
    async def get_entry_file(self, request: web.Request) -> web.StreamResponse:
        """One file of a complete entry, only with the entry's token, only if engine.json lists
        it (engine.json itself always)."""
        digest, path = request.match_info["digest"], request.match_info["path"]
        if not _HEX64.match(digest):
            return _json_error(404, "NotFound", "no such entry")
        if not integrity.token_valid(
            self.config.transfer_key, integrity.entry_scope(digest), _bearer(request)
        ):
            return _json_error(403, "Forbidden", f"no valid token for entry {digest[:12]}")
        store = self.config.store
        try:
            raw = await asyncio.to_thread(store.read_manifest_bytes, digest)
        except BuildError as exc:
            return _json_error(503, exc.reason, exc.message)
        if raw is None:
            return _json_error(404, "EngineNotFound", f"no complete entry {digest[:12]}")
        if path == MANIFEST_NAME:
            return web.Response(body=raw, content_type="application/json")
        try:
            listed = EngineManifest.model_validate_json(raw).file(path)
        except ValueError:
            listed = None
        if listed is None:
            return _json_error(404, "NotFound", f"engine.json of {digest[:12]} lists no {path}")
        try:
            handle = await asyncio.to_thread(store.open_file, digest, path)
        except BuildError as exc:
            return _json_error(503, exc.reason, exc.message)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = listed.size
        await response.prepare(request)
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                await response.write(chunk)
        finally:
            handle.close()
        await response.write_eof()
        return response

    # --- staged sources -----------------------------------------------------------------------
    async def put_source(self, request: web.Request) -> web.Response:
        """Hash the body as it arrives; keep it only when its sha256 is the URL's. Quotas are
        checked, and the bytes reserved, before a byte is read."""
        sha, owner = request.match_info["sha"], request.headers.get(OWNER_HEADER, "")
        query = request.query
        keep_text, limit_text = query.get("keep", ""), query.get("max", "")
        namespace, expires_text = query.get("ns", ""), query.get("expires", "")
        if not (
            _HEX64.match(sha)
            and _OWNER.match(owner)
            and _NAMESPACE.match(namespace)
            and keep_text in ("0", "1")
            and _NUMBER.match(limit_text)
            and _NUMBER.match(expires_text)
        ):
            return _json_error(
                400,
                "InvalidRequest",
                "want /sources/<sha256>?keep=0|1&max=<bytes>&ns=<namespace>&expires=<unix "
                "seconds> and an owner header",
            )
        keep, limit, expires = keep_text == "1", int(limit_text), int(expires_text)
        scope = integrity.source_put_scope(
            sha, owner, namespace, keep=keep, max_bytes=limit, expires=expires
        )
        if not integrity.token_valid(self.config.transfer_key, scope, _bearer(request)):
            return _json_error(403, "Forbidden", "no valid token to send this source")
        if expires < time.time():
            return _json_error(403, "TokenExpired", "the token to send this source has expired")
        limit = min(limit, self.config.max_source_bytes)
        length = request.content_length
        if length is not None and length > limit:
            return _json_error(413, "SourceTooLarge", f"over the allowed {limit} bytes")
        reserve = (length or 0) if keep else 0
        try:
            with self.inbox.upload(namespace, reserve) as lease:
                return await self._receive(request, sha, owner, lease if keep else None, limit)
        except QuotaExceeded as exc:
            headers = {"Retry-After": "30"} if exc.status == 429 else None
            response = _json_error(exc.status, exc.reason, exc.message)
            response.headers.update(headers or {})
            return response

    async def _receive(
        self, request: web.Request, sha: str, owner: str, lease: Lease | None, limit: int
    ) -> web.Response:
        """Read the body (kept when there is a lease): a read timeout, a minimum rate, the
        size limit, and every byte covered by the lease before it is written."""
        keep, namespace = lease is not None, request.query["ns"]
        partial = self.inbox.partial(namespace, sha, owner, secrets.token_hex(4))
        digest, size = hashlib.sha256(), 0
        out = partial.open("wb") if keep else None
        started = time.monotonic()
        config = self.config
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(
                        request.content.readany(), config.read_timeout_seconds
                    )
                except TimeoutError:
                    return _json_error(408, "UploadStalled", "no bytes arrived in time")
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    return _json_error(413, "SourceTooLarge", f"over the allowed {limit} bytes")
                elapsed = time.monotonic() - started
                if (
                    elapsed > config.read_timeout_seconds
                    and size < config.min_upload_rate * elapsed
                ):
                    return _json_error(408, "UploadTooSlow", "the upload is below the minimum rate")
                digest.update(chunk)
                if out is not None and lease is not None:
                    lease.cover(size)  # QuotaExceeded: 507, the partial file removed below
                    await asyncio.to_thread(out.write, chunk)
            if digest.hexdigest() != sha:
                return _json_error(
                    400, "ChecksumMismatch", f"the bytes sent are not sha256 {sha[:12]}..."
                )
            if out is not None:
                out.close()
                target = self.inbox.path(namespace, sha, owner)
                self.inbox.remove(target)  # a resend replaces the earlier copy
                os.replace(partial, target)
                self.inbox.kept(namespace, size)
        finally:
            if out is not None:
                out.close()
            partial.unlink(missing_ok=True)
        receipt = integrity.token(
            config.transfer_key, integrity.receipt_scope(sha, owner, kept=keep)
        )
        log.info("source %s: %d bytes from %s/%s, kept %s", sha[:12], size, namespace, owner, keep)
        return web.json_response({"sha256": sha, "bytes": size, "kept": keep, "receipt": receipt})

    def _authorised_source(self, request: web.Request) -> tuple[str, str] | web.Response:
        sha, owner = request.match_info["sha"], request.query.get("owner", "")
        if not _HEX64.match(sha) or not _OWNER.match(owner):
            return _json_error(404, "NotFound", "no such source (want ?owner=<uid>)")
        scope = integrity.source_get_scope(sha, owner)
        if not integrity.token_valid(self.config.transfer_key, scope, _bearer(request)):
            return _json_error(403, "Forbidden", "no valid token to read this source")
        return sha, owner

    async def get_source(self, request: web.Request) -> web.StreamResponse:
        """The source staged for one ModelDeployment, for its build Job."""
        found = self._authorised_source(request)
        if isinstance(found, web.Response):
            return found
        path = await asyncio.to_thread(self.inbox.find, *found)
        if path is None:
            return _json_error(404, "SourceNotStaged", f"no staged source {found[0][:12]}")
        return web.FileResponse(path)

    async def delete_source(self, request: web.Request) -> web.Response:
        """Drop a ModelDeployment's staged source once its build published the engine."""
        found = self._authorised_source(request)
        if isinstance(found, web.Response):
            return found
        path = await asyncio.to_thread(self.inbox.find, *found)
        if path is not None:
            self.inbox.remove(path)
        return web.json_response({"deleted": found[0]})

    async def _sweeper(self, _: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(min(600.0, self.config.inbox_ttl_seconds / 4))
                self.inbox.sweep(self.config.inbox_ttl_seconds)  # a few stats: on the loop

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def serve(config: ServerConfig, host: str, port: int) -> None:
    """Run the engine server until interrupted."""
    web.run_app(StoreServer(config).app(), host=host, port=port, print=None)
