"""The engine store as the cluster has it, on loopback: entries sealed with the test key the
way the publishing step seals them, and the real engine server (`modelops-build serve-store`'s
application) over a store folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from modelops_builder.seal import hash_stream
from modelops_builder.store import open_store
from modelops_builder.store_server import ServerConfig, StoreServer
from modelops_contract import integrity
from modelops_contract.key import key_digest
from modelops_contract.layout import MANIFEST_NAME
from modelops_contract.manifest import EngineManifest
from modelops_contract.staging import StageRequest, source_url, staged_source_url

# The keys of the chart's Secret, in tests.
TEST_MAC_KEY = "test-store-mac-key-0123456789abcdef0123"
TEST_TRANSFER_KEY = "test-transfer-key-0123456789abcdef01234"


def seal(entry: Path, manifest: EngineManifest, mac_key: str | None = TEST_MAC_KEY) -> str:
    """engine.json for the files in `entry` (each listed with its sha256), with the MAC;
    returns the sha256 of engine.json (what the operator pins)."""
    files = []
    for path in sorted(p for p in entry.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        with path.open("rb") as handle:
            sha, size = hash_stream(handle)
        files.append({"path": path.relative_to(entry).as_posix(), "sha256": sha, "size": size})
    data: dict[str, Any] = {**manifest.to_wire(), "files": files}
    data.pop("mac", None)
    raw = integrity.signed_manifest_bytes(data, mac_key.encode() if mac_key else None)
    (entry / MANIFEST_NAME).write_bytes(raw)
    return integrity.sha256_hex(raw)


def entry_dir(store: Path, key: str) -> Path:
    """`<store>/<digest>`, created."""
    path = store / key_digest(key)
    path.mkdir(parents=True, exist_ok=True)
    return path


def rewrite_manifest(store: Path, key: str, **fields: Any) -> None:
    """Change engine.json after publishing, MAC untouched (what a tamperer can do)."""
    path = store / key_digest(key) / MANIFEST_NAME
    data: Mapping[str, Any] = json.loads(path.read_bytes())
    path.write_text(json.dumps({**data, **fields}, indent=2))


@contextlib.asynccontextmanager
async def engine_server(
    store: Path,
    inbox: Path,
    *,
    max_source_bytes: int = 1 << 30,
    transfer_key: str = TEST_TRANSFER_KEY,
    port: int = 0,
    **config_options: Any,
) -> AsyncIterator[str]:
    """The engine server's application on 127.0.0.1 (`port`, else a free one); yields its base
    URL. `config_options`: more ServerConfig fields (quotas, timeouts)."""
    config = ServerConfig(
        store=open_store(str(store)),
        inbox=inbox,
        transfer_key=integrity.key_bytes(transfer_key),
        max_source_bytes=max_source_bytes,
        **config_options,
    )
    runner = web.AppRunner(StoreServer(config).app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def engine_server_thread(store: Path, inbox: Path, **options: Any) -> Iterator[str]:
    """engine_server in a thread of its own, for synchronous tests and subprocesses."""
    ready: queue.Queue[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = queue.Queue()

    async def run() -> None:
        stop = asyncio.Event()
        async with engine_server(store, inbox, **options) as url:
            ready.put((url, asyncio.get_running_loop(), stop))
            await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    url, loop, stop = ready.get(timeout=10)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def put_source(
    server: str,
    sha: str,
    owner: str,
    *,
    namespace: str = "team-a",
    keep: bool = True,
    max_bytes: int = 1 << 30,
    expires: int | None = None,
) -> tuple[str, str]:
    """(URL, token) of a source PUT as the operator would mint it for a source Job."""
    when = int(time.time()) + 3600 if expires is None else expires
    request = StageRequest(
        source_uri="https://example.com/m.onnx",
        sha256=sha,
        server=server,
        owner=owner,
        namespace=namespace,
        expires=when,
        token="",
        keep=keep,
        max_download_bytes=max_bytes,
    )
    scope = integrity.source_put_scope(
        sha, owner, namespace, keep=keep, max_bytes=max_bytes, expires=when
    )
    url = f"{source_url(server, sha)}?{request.put_query()}"
    return url, integrity.token(integrity.key_bytes(TEST_TRANSFER_KEY), scope)


def get_source(server: str, sha: str, owner: str) -> tuple[str, str]:
    """(URL, token) of a staged source as the operator would give its build Job."""
    token = integrity.token(
        integrity.key_bytes(TEST_TRANSFER_KEY), integrity.source_get_scope(sha, owner)
    )
    return staged_source_url(server, sha, owner), token
