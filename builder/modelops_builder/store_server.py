"""`modelops-build serve-store`: the engine server, in the operator's namespace.

Tenants never touch the store: this small HTTP server is their only way to it, and it can do
three things, each only with the token the operator minted for it (modelops_contract.integrity):

- GET /entries/<digest>/<path>: a file of a complete entry, and only a file engine.json lists
  (Triton pods and validation Jobs; they check every byte themselves against the digest the
  operator pinned). Read-only: nothing here writes to the store.
- PUT /sources/<sha256>: a source Job streams a model; the bytes are hashed as they arrive and
  kept (?keep=1, in the inbox, for the build Job) only when their sha256 is the one in the URL;
  the answer is a receipt the operator checks before it builds or uses a stored engine.
- GET and DELETE /sources/<sha256>: the build Job reads (then drops) a staged source.

The inbox is a folder of files named by their sha256, swept after `inbox_ttl` seconds.
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
from dataclasses import dataclass
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
from .store import Store

log = logging.getLogger(__name__)

TRANSFER_KEY_ENV = integrity.TRANSFER_KEY_ENV
CHUNK = 1 << 20
PARTIAL = ".partial-"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OWNER = re.compile(r"^[A-Za-z0-9-]{1,128}$")


@dataclass(frozen=True)
class ServerConfig:
    """What the server serves from and how much it accepts."""

    store: Store
    inbox: Path
    transfer_key: bytes
    max_source_bytes: int = 20 * 1024**3
    inbox_ttl_seconds: float = 6 * 3600.0


def _json_error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"reason": reason, "message": message}, status=status)


def _bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()


class StoreServer:
    """The aiohttp application of the engine server."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        config.inbox.mkdir(parents=True, exist_ok=True)
        # An inbox that outlived the previous server (a persistent volume) keeps its staged
        # sources; uploads that restart cut short are dropped (their source Jobs send again).
        for partial in config.inbox.glob(f"{PARTIAL}*"):
            partial.unlink(missing_ok=True)
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
    def _source_path(self, sha: str) -> Path:
        return self.config.inbox / sha

    async def put_source(self, request: web.Request) -> web.Response:
        """Hash the body as it arrives; keep it only when its sha256 is the URL's."""
        sha, owner = request.match_info["sha"], request.headers.get(OWNER_HEADER, "")
        if not _HEX64.match(sha) or not _OWNER.match(owner):
            return _json_error(400, "InvalidRequest", "want /sources/<sha256> and an owner")
        scope = integrity.source_put_scope(sha, owner)
        if not integrity.token_valid(self.config.transfer_key, scope, _bearer(request)):
            return _json_error(403, "Forbidden", "no valid token to send this source")
        keep = request.query.get("keep") == "1"
        self._sweep()
        partial = self.config.inbox / f"{PARTIAL}{sha}-{secrets.token_hex(4)}"
        digest, size = hashlib.sha256(), 0
        out = partial.open("wb") if keep else None
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > self.config.max_source_bytes:
                    limit = self.config.max_source_bytes
                    return _json_error(413, "SourceTooLarge", f"over the server's {limit} bytes")
                digest.update(chunk)
                if out is not None:
                    await asyncio.to_thread(out.write, chunk)
            if digest.hexdigest() != sha:
                return _json_error(
                    400, "ChecksumMismatch", f"the bytes sent are not sha256 {sha[:12]}..."
                )
            if out is not None:
                out.close()
                os.replace(partial, self._source_path(sha))
        finally:
            if out is not None:
                out.close()
            partial.unlink(missing_ok=True)
        receipt = integrity.token(
            self.config.transfer_key, integrity.receipt_scope(sha, owner, kept=keep)
        )
        log.info("source %s: %d bytes from owner %s (kept: %s)", sha[:12], size, owner, keep)
        return web.json_response({"sha256": sha, "bytes": size, "kept": keep, "receipt": receipt})

    def _authorised_source(self, request: web.Request) -> str | web.Response:
        sha = request.match_info["sha"]
        if not _HEX64.match(sha):
            return _json_error(404, "NotFound", "no such source")
        scope = integrity.source_get_scope(sha)
        if not integrity.token_valid(self.config.transfer_key, scope, _bearer(request)):
            return _json_error(403, "Forbidden", "no valid token to read this source")
        return sha

    async def get_source(self, request: web.Request) -> web.StreamResponse:
        """A staged source, for the build Job."""
        sha = self._authorised_source(request)
        if isinstance(sha, web.Response):
            return sha
        path = self._source_path(sha)
        if not path.is_file():
            return _json_error(404, "SourceNotStaged", f"no staged source {sha[:12]}")
        return web.FileResponse(path)

    async def delete_source(self, request: web.Request) -> web.Response:
        """Drop a staged source once the build published its engine."""
        sha = self._authorised_source(request)
        if isinstance(sha, web.Response):
            return sha
        self._source_path(sha).unlink(missing_ok=True)
        return web.json_response({"deleted": sha})

    def _sweep(self) -> None:
        """Remove inbox files older than the TTL (staged sources no build came for)."""
        limit = time.time() - self.config.inbox_ttl_seconds
        for path in self.config.inbox.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink()

    async def _sweeper(self, _: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:
                await asyncio.sleep(min(600.0, self.config.inbox_ttl_seconds / 4))
                await asyncio.to_thread(self._sweep)

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def serve(config: ServerConfig, host: str, port: int) -> None:
    """Run the engine server until interrupted."""
    web.run_app(StoreServer(config).app(), host=host, port=port, print=None)
