"""Finding 5 of issue 23: scraping is budgeted per tenant. One tenant's 40 pods that accept a
connection and never answer leave another tenant's scrape on time, through the operator's one
shared session, because connections are budgeted per namespace and a scrape's timeout starts
once its slot is held."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp.web

from modelops_operator.metrics.scrape import (
    PER_NAMESPACE_CONNECTIONS,
    MetricsTracker,
    MissingReason,
    ScrapeGates,
    new_session,
)

DATA = Path(__file__).resolve().parents[1] / "unit" / "data"
PAGE = (DATA / "triton_metrics_cpu_a.txt").read_text()
TIMEOUT = 0.5


@contextlib.asynccontextmanager
async def hanging_port() -> AsyncIterator[tuple[int, list[int]]]:
    """A port that accepts every connection and never answers (a hostile pod's metrics port);
    yields the port and the count of connections open at each accept."""
    writers: list[asyncio.StreamWriter] = []
    seen: list[int] = []
    live = [0]

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        live[0] += 1
        seen.append(live[0])
        try:
            while await reader.read(65536):  # read the request, answer nothing, until closed
                pass
        finally:
            live[0] -= 1

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        for writer in writers:
            writer.close()
        server.close()


@contextlib.asynccontextmanager
async def healthy_port() -> AsyncIterator[int]:
    """A pod serving a real Triton metrics page."""

    async def metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=PAGE)

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get("/metrics", metrics)])
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_finding_5_one_tenants_hanging_pods_leave_another_tenants_scrape_on_time() -> None:
    gates = ScrapeGates()
    async with hanging_port() as (bad, open_at_accept), healthy_port() as good, new_session() as s:
        hostile = {f"evil-{i}": f"http://127.0.0.1:{bad}/metrics?pod={i}" for i in range(40)}
        healthy = {f"ok-{i}": f"http://127.0.0.1:{good}/metrics?pod={i}" for i in range(2)}
        evil_tracker = MetricsTracker(timeout_s=4 * TIMEOUT)
        ok_tracker = MetricsTracker(timeout_s=TIMEOUT)
        attack = asyncio.create_task(evil_tracker.poll(s, hostile, gates.for_namespace("evil")))
        await asyncio.sleep(0.2)  # the hostile tenant holds its connections first
        started = time.monotonic()
        poll = await ok_tracker.poll(s, healthy, gates.for_namespace("ml"))
        took = time.monotonic() - started
        await asyncio.sleep(0.2)
        attack.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attack
    # the healthy tenant's pods all answered inside their timeout
    assert took < TIMEOUT, took
    assert set(poll.missing) == set(healthy)  # the first sample is a baseline: data, not a miss
    assert {m.reason for m in poll.missing.values()} == {MissingReason.BASELINE}
    # the hostile tenant held its whole budget, never more
    assert max(open_at_accept) == PER_NAMESPACE_CONNECTIONS


async def test_finding_5_a_scrape_timeout_excludes_waiting_for_a_slot() -> None:
    # 3 pods of one namespace with one connection slot: each answers in 0.6 timeouts, so the
    # third waits 1.2 timeouts for its slot and must still not count as timed out
    async def late(_: aiohttp.web.Request) -> aiohttp.web.Response:
        await asyncio.sleep(0.6 * TIMEOUT)
        return aiohttp.web.Response(text=PAGE)

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get("/metrics", late)])
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with new_session() as session:
            targets = {f"p{i}": f"http://127.0.0.1:{port}/metrics?pod={i}" for i in range(3)}
            tracker = MetricsTracker(timeout_s=TIMEOUT)
            gates = ScrapeGates(per_namespace=1)
            poll = await tracker.poll(session, targets, gates.for_namespace("ml"))
    finally:
        await runner.cleanup()
    assert {m.reason for m in poll.missing.values()} == {MissingReason.BASELINE}
    assert set(poll.missing) == set(targets)
