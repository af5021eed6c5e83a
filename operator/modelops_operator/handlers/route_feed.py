"""The route tables the router agents long-poll: `GET /routes/<namespace>/<name>?after=V`.

Answers at once with the table when its version differs from V, else waits until it changes or
LONG_POLL_SECONDS pass (then 304). Tables come from the status this process last wrote or saw,
so every operator replica answers, the leader first. Read-only: a table names revision Services
and their weights, nothing secret.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp.web

from ..api import RouteTable, TrafficMode, TrafficStatus
from ..decide.traffic import route_table

Key = tuple[str, str]
LONG_POLL_SECONDS = 25.0
MAX_WAITERS = 10_000


class RouteFeed:
    """Tables by ModelDeployment, and the waiters of each."""

    def __init__(self, body_of: Callable[[Key], Mapping[str, Any] | None]) -> None:
        self._body_of = body_of
        self._changed: dict[Key, asyncio.Event] = {}
        self.waiting = 0
        self.closed = False

    def table(self, key: Key) -> RouteTable | None:
        """The Router-mode table of a ModelDeployment, or None."""
        body = self._body_of(key)
        if body is None:
            return None
        raw = (body.get("status") or {}).get("traffic")
        try:
            traffic = TrafficStatus.model_validate(raw) if raw else None
        except ValueError:
            return None
        if traffic is None or traffic.mode != TrafficMode.ROUTER:
            return None
        return route_table(key[1], key[0], traffic)

    def notify(self, key: Key) -> None:
        """A status changed: wake that ModelDeployment's waiters."""
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    def close(self) -> None:
        """The process stops: every waiter answers now (304), none waits from here on, so the
        HTTP server stops without holding long polls (agents retry on another replica)."""
        self.closed = True
        for event in self._changed.values():
            event.set()
        self._changed.clear()

    async def wait(
        self, key: Key, after: int, seconds: float = LONG_POLL_SECONDS
    ) -> RouteTable | None:
        """The table once its version differs from `after`, or None after `seconds`."""
        table = self.table(key)
        if table is not None and table.version != after:
            return table
        if self.closed or self.waiting >= MAX_WAITERS:
            return None
        event = self._changed.setdefault(key, asyncio.Event())
        self.waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), seconds)
        finally:
            self.waiting -= 1
        table = self.table(key)
        return table if table is not None and table.version != after else None

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """The aiohttp handler of `/routes/{namespace}/{name}`."""
        key = (request.match_info["namespace"], request.match_info["name"])
        after_text = request.query.get("after", "-1")
        after = int(after_text) if after_text.lstrip("-").isdigit() else -1
        if self.table(key) is None:
            return aiohttp.web.Response(status=404, text="no route table\n")
        table = await self.wait(key, after)
        if table is None:
            return aiohttp.web.Response(status=304)
        return aiohttp.web.Response(
            text=table.model_dump_json(by_alias=True), content_type="application/json"
        )
