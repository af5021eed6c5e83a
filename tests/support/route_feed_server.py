"""The operator's route feed served on 127.0.0.1 by aiohttp, for tests and the feed bench:
tables held in a dict, the requests each table got counted."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from modelops_contract import integrity
from modelops_operator.handlers.route_feed import FeedLimits, RouteFeed
from tests.support.engine_store import TEST_TRANSFER_KEY

KEY = TEST_TRANSFER_KEY.encode()


def table_token(namespace: str, name: str) -> str:
    """The token the operator puts in that ModelDeployment's router pods."""
    return integrity.token(KEY, integrity.route_scope(namespace, name))


def router_body(version: int, weights: dict[int, int]) -> dict[str, Any]:
    """A ModelDeployment whose status.traffic is a Router-mode table."""
    rows = [{"revision": r, "weight": w} for r, w in weights.items()]
    return {"status": {"traffic": {"mode": "Router", "version": version, "weights": rows}}}


@dataclass
class FeedServer:
    """The feed, its bodies, its URL base, and how many requests each table got."""

    feed: RouteFeed
    bodies: dict[tuple[str, str], dict[str, Any]]
    base: str
    # (namespace, name, carried that table's token) -> requests
    requests: Counter[tuple[str, str, bool]] = field(default_factory=Counter)

    def url(self, namespace: str, name: str) -> str:
        """The feed URL of one table."""
        return f"{self.base}/routes/{namespace}/{name}"

    def change(self, key: tuple[str, str], version: int, weights: dict[int, int]) -> None:
        """A new status for `key`: its waiters wake."""
        self.bodies[key] = router_body(version, weights)
        self.feed.notify(key)


@contextlib.asynccontextmanager
async def feed_server(
    limits: FeedLimits | None = None, wait_seconds: float = 25.0
) -> AsyncIterator[FeedServer]:
    """The route feed on a free port of 127.0.0.1; stopped at the end."""
    bodies: dict[tuple[str, str], dict[str, Any]] = {}
    feed = RouteFeed(bodies.get, KEY, limits, wait_seconds)
    server = FeedServer(feed, bodies, "")

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        key = (request.match_info["namespace"], request.match_info["name"])
        known = feed.authorized(key, request.headers.get("Authorization"))
        server.requests[key[0], key[1], known] += 1
        return await feed.handle(request)

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get("/routes/{namespace}/{name}", handle)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.base = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        feed.close()
        await runner.cleanup()
