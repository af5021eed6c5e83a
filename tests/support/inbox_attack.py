"""Finding 2 of issue 23, as an attacker runs it: uploads that send some wrong bytes and then
stall, against the engine server, while another tenant pulls an entry. Used by
tests/integration/test_inbox_isolation.py and bench/bench_inbox_attack.py."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from modelops_contract import integrity
from modelops_contract.manifest import EngineManifest
from modelops_contract.staging import OWNER_HEADER, entry_url
from tests.support.engine_store import TEST_TRANSFER_KEY, entry_dir, put_source, seal

ENTRY_KEY = "sha256:" + "5e" * 32
MODEL_PATH = "repository/model/1/model.onnx"


def sealed_entry(store: Path, size: int = 1 << 20) -> tuple[str, str]:
    """A complete entry with a `size`-byte model file; (digest, its token)."""
    folder = entry_dir(store, ENTRY_KEY)
    model = folder / MODEL_PATH
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(os.urandom(size))
    manifest = EngineManifest(
        key=ENTRY_KEY,
        engine="onnxruntime",
        precision="fp32",
        serving_backend="onnxruntime",
        model_name="model",
        model_file="model.onnx",
        inputs=[{"name": "x", "data_type": "FP32", "dims": [4]}],
        outputs=[{"name": "y", "data_type": "FP32", "dims": [2]}],
        max_batch_size=4,
        opt_batch_size=4,
        source_sha256="cd" * 32,
        format="onnx",
        created_at="2025-01-01T00:00:00Z",
    )
    seal(folder, manifest)
    digest = ENTRY_KEY.removeprefix("sha256:")
    token = integrity.token(integrity.key_bytes(TEST_TRANSFER_KEY), integrity.entry_scope(digest))
    return digest, token


@dataclass
class Stalled:
    """What one stalled upload got: the server's status (0: no answer), and when."""

    status: int
    seconds: float


async def stalled_upload(
    server: str, namespace: str, owner: str, send: int, hold: float, *, declared: int | None = None
) -> Stalled:
    """PUT ?keep=1 of a made-up sha256 with its own valid token: `send` wrong bytes, then
    nothing for `hold` seconds (or until the server answers)."""
    sha = os.urandom(32).hex()
    url, token = put_source(server, sha, owner, namespace=namespace)
    parts = urlsplit(url)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    length = f"Content-Length: {declared}\r\n" if declared is not None else ""
    chunked = "" if declared is not None else "Transfer-Encoding: chunked\r\n"
    head = (
        f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\n{OWNER_HEADER}: {owner}\r\n{length}{chunked}\r\n"
    )
    try:
        writer.write(head.encode())
        piece = os.urandom(min(send, 1 << 20))
        sent = 0
        while sent < send:
            data = piece[: send - sent]
            writer.write(
                data if declared is not None else f"{len(data):x}\r\n".encode() + data + b"\r\n"
            )
            await writer.drain()
            sent += len(data)
        line = await asyncio.wait_for(reader.readline(), hold)
        status = int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    except (TimeoutError, ConnectionError, IndexError, ValueError):
        status = 0
    finally:
        writer.close()
    return Stalled(status, time.monotonic() - started)


async def pull_latencies(
    server: str, digest: str, token: str, seconds: float, pause: float = 0.05
) -> list[float]:
    """Another tenant's pod pulling the entry's model file again and again for `seconds`:
    each pull's seconds (a failed pull counts as infinity)."""
    url = entry_url(server, digest, MODEL_PATH)
    out: list[float] = []
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            out.append(time.monotonic() - started if ok else float("inf"))
            await asyncio.sleep(pause)
    return out


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def inbox_bytes(inbox: Path) -> int:
    """Bytes the inbox folder holds now (staged and partial)."""
    return sum(p.stat().st_size for p in inbox.rglob("*") if p.is_file())
