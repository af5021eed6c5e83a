"""`modelops router-agent`: the agent's sources of route tables and its own small HTTP server.

`/ready` answers 200 once HAProxy runs the newest table (the pod's readiness probe, so a router
pod takes client connections only when it routes them); `/metrics` gives the per-revision
figures the operator's canary analysis reads; `/demand` takes HAProxy's hold reports (loopback
only) and relays them to the operator (router/demand.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import aiohttp.web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError

from ..api.routes import RouteTable
from .admin import HAProxyAdmin
from .agent import Resolver, RouterAgent, TableSource, dns_resolver, follow
from .demand import DemandRelay, operator_sink

logger = logging.getLogger(__name__)

LONG_POLL_SECONDS = 25.0
# An answer without a newer table never makes the next poll come sooner than this.
MIN_POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def file_source(path: Path) -> TableSource:
    """The table in the mounted ConfigMap (kubelet refreshes it, slowly): checked every second."""

    async def read(version: int) -> RouteTable | None:
        await asyncio.sleep(1.0)
        try:
            table = RouteTable.model_validate_json(await asyncio.to_thread(path.read_text))
        except (OSError, ValidationError):
            return None
        return table if table.version > version else None

    return read


def backoff_seconds(failures: int, retry_after: str | None = None) -> float:
    """How long to wait after `failures` failed polls in a row: doubling from 1 s to
    MAX_BACKOFF_SECONDS, and never less than the server's Retry-After (seconds, capped too)."""
    delay = min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, failures - 1))
    if retry_after is not None and retry_after.strip().isascii() and retry_after.strip().isdigit():
        delay = max(delay, min(MAX_BACKOFF_SECONDS, float(retry_after.strip())))
    return delay


def operator_source(
    url: str, session: aiohttp.ClientSession, token: str | None = None
) -> TableSource:
    """The operator's `/routes/<namespace>/<name>` endpoint, long-polled with the router's token:
    it answers when the table changes, or with 304 after LONG_POLL_SECONDS. A refusal (429 and
    its Retry-After, 401, 5xx) or a lost connection waits longer each time it repeats, and an
    early 304 waits out MIN_POLL_SECONDS, so no answer of the operator makes the agent spin."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    failures = 0
    last_status = 200

    async def pause(seconds: float) -> None:
        await asyncio.sleep(seconds * random.uniform(0.75, 1.0))  # noqa: S311 - jitter only

    async def poll(version: int) -> RouteTable | None:
        nonlocal failures, last_status
        timeout = aiohttp.ClientTimeout(total=LONG_POLL_SECONDS + 10)
        started = time.monotonic()
        try:
            async with session.get(
                url, params={"after": str(version)}, headers=headers, timeout=timeout
            ) as resp:
                status, retry_after = resp.status, resp.headers.get("Retry-After")
                body = await resp.text() if status == 200 else ""
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, retry_after, body = 0, None, repr(exc)
        if status in (200, 304):
            failures, last_status = 0, status
            if status == 200:
                return RouteTable.model_validate_json(body)
            await asyncio.sleep(max(0.0, MIN_POLL_SECONDS - (time.monotonic() - started)))
            return None
        failures += 1
        if status == 404:  # no Router-mode table yet: it comes with the rollout, soon
            retry_after = None
            failures = min(failures, 3)
        if status != last_status:
            logger.warning("route feed %s answered %s: backing off", url, status or body)
            last_status = status
        await pause(backoff_seconds(failures, retry_after))
        return None

    return poll


class _Figures(Collector):
    def __init__(self, agent: RouterAgent) -> None:
        self.agent = agent

    def collect(self) -> list[Metric]:
        return self.agent.ledger.metrics(self.agent.table.weights(), self.agent.applied_version)


@dataclass(frozen=True)
class AgentOptions:
    """How one agent runs."""

    admin_socket: str
    routes_url: str | None
    boot_file: Path | None
    route_token: str | None = None
    host: str = "0.0.0.0"  # noqa: S104 - the pod's probe and metrics port
    port: int = 8405


async def serve_agent(
    options: AgentOptions, stop: asyncio.Event, resolve: Resolver = dns_resolver
) -> RouterAgent:
    """Run the agent until `stop` is set (returns it, for tests)."""
    agent = RouterAgent(HAProxyAdmin(options.admin_socket), resolve, options.port)
    session = aiohttp.ClientSession()
    sink = None
    if options.routes_url:
        sink = operator_sink(f"{options.routes_url}/demand", session, options.route_token)
    relay = DemandRelay(sink)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Figures(agent))

    async def ready(_: aiohttp.web.Request) -> aiohttp.web.Response:
        text = f"table {agent.table.version} applied {agent.applied_version}\n"
        return aiohttp.web.Response(text=text, status=200 if agent.ready else 503)

    async def metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=generate_latest(registry), content_type="text/plain")

    app = aiohttp.web.Application()
    app.add_routes(
        [
            aiohttp.web.get("/ready", ready),
            aiohttp.web.get("/metrics", metrics),
            aiohttp.web.post("/demand", relay.handle),
        ]
    )
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, options.host, options.port).start()
    tasks = [asyncio.create_task(agent.run(stop))]
    async with session:
        if options.boot_file is not None:
            tasks.append(asyncio.create_task(follow(file_source(options.boot_file), agent, stop)))
        if options.routes_url:
            source = operator_source(options.routes_url, session, options.route_token)
            tasks.append(asyncio.create_task(follow(source, agent, stop)))
        await stop.wait()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await relay.close()
    await runner.cleanup()
    return agent
