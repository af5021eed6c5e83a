"""The route tables the router agents long-poll: `GET /routes/<namespace>/<name>?after=V`.

Answers at once with the table when its version differs from V, else waits until it changes or
the wait period passes (then 304). Tables come from the status this process last wrote or saw,
so every operator replica answers, the leader first.

A table names a tenant's revision Services and their weights: only that ModelDeployment's router
reads it. Each request carries `Authorization: Bearer <token>`, the HMAC (transfer key) of the
table's `route:<namespace>/<name>` scope, which the operator puts in that router's pod spec only.
Waiting is limited per table, per namespace and in all; a client over a limit, or asking faster
than its table's budget, gets 429 with Retry-After (never an early 304: that made agents poll in
a busy loop). A malformed `after` or name gets 400 naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from modelops_contract import integrity

from ..api import RouteTable, TrafficMode, TrafficStatus
from ..decide.traffic import route_table

Key = tuple[str, str]
LONG_POLL_SECONDS = 25.0
# A DNS-1123 label (namespace) and subdomain (ModelDeployment name), as the API server allows.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_VERSION = re.compile(r"-?[0-9]{1,18}")


def valid_key(namespace: str, name: str) -> bool:
    """A namespace and a ModelDeployment name as the API server allows them."""
    return bool(_NAMESPACE.fullmatch(namespace) and _NAME.fullmatch(name))


@dataclass(frozen=True)
class FeedLimits:
    """How much of the feed one client may hold: parked polls per table, per namespace and in
    all, and a request budget per table (a burst, refilled at a rate per second)."""

    waiters_per_table: int = 64  # twice the most router replicas a table can have
    waiters_per_namespace: int = 512
    waiters_total: int = 10_000
    burst_per_table: float = 60.0
    refill_per_second: float = 10.0
    retry_after_seconds: int = 5


@dataclass
class _Bucket:
    tokens: float
    stamp: float = field(default_factory=time.monotonic)


class RouteFeed:
    """Tables by ModelDeployment, the waiters of each, and who may read which."""

    def __init__(
        self,
        body_of: Callable[[Key], Mapping[str, Any] | None],
        transfer_key: bytes | None,
        limits: FeedLimits | None = None,
        wait_seconds: float = LONG_POLL_SECONDS,
    ) -> None:
        self._body_of = body_of
        self._key = transfer_key
        self.limits = limits or FeedLimits()
        self.wait_seconds = wait_seconds
        self._changed: dict[Key, asyncio.Event] = {}
        self._waiting: dict[object, int] = {}
        self._buckets: dict[Key, _Bucket] = {}
        self.closed = False

    @property
    def waiting(self) -> int:
        """Polls parked right now."""
        return self._waiting.get((), 0)

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

    def _counters(self, key: Key) -> tuple[tuple[object, int], ...]:
        limits = self.limits
        return (
            ((), limits.waiters_total),
            (key[0], limits.waiters_per_namespace),
            (key, limits.waiters_per_table),
        )

    def _may_park(self, key: Key) -> bool:
        return all(self._waiting.get(name, 0) < cap for name, cap in self._counters(key))

    def _spend(self, key: Key) -> bool:
        """Take one request from the table's budget; False when it is spent."""
        now = time.monotonic()
        limits = self.limits
        bucket = self._buckets.setdefault(key, _Bucket(limits.burst_per_table, now))
        elapsed = now - bucket.stamp
        refill = elapsed * limits.refill_per_second
        bucket.tokens = min(limits.burst_per_table, bucket.tokens + refill)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    async def wait(self, key: Key, after: int) -> RouteTable | None:
        """The table once its version differs from `after`, or None after the wait period."""
        table = self.table(key)
        if table is not None and table.version != after:
            return table
        if self.closed:
            return None
        event = self._changed.setdefault(key, asyncio.Event())
        counters = [name for name, _ in self._counters(key)]
        for name in counters:
            self._waiting[name] = self._waiting.get(name, 0) + 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.wait_seconds)
        finally:
            for name in counters:
                self._waiting[name] -= 1
                if not self._waiting[name]:
                    del self._waiting[name]
        table = self.table(key)
        return table if table is not None and table.version != after else None

    def authorized(self, key: Key, header: str | None) -> bool:
        """Whether `header` carries the token of this table."""
        if self._key is None or not header or not header.startswith("Bearer "):
            return False
        scope = integrity.route_scope(key[0], key[1])
        return integrity.token_valid(self._key, scope, header.removeprefix("Bearer ").strip())

    def _too_many(self, why: str) -> aiohttp.web.Response:
        retry = str(self.limits.retry_after_seconds)
        return aiohttp.web.Response(status=429, text=f"{why}\n", headers={"Retry-After": retry})

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """The aiohttp handler of `/routes/{namespace}/{name}`."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if not valid_key(namespace, name):
            return _bad("the path must be /routes/<namespace>/<name> of a ModelDeployment")
        after_text = request.query.get("after", "-1")
        if not _VERSION.fullmatch(after_text):
            return _bad("`after` must be a route table version: an integer such as 0 or -1")
        key = (namespace, name)
        if not self.authorized(key, request.headers.get("Authorization")):
            return aiohttp.web.Response(
                status=401,
                text="this route table needs its router's token (Authorization: Bearer ...)\n",
                headers={"WWW-Authenticate": 'Bearer realm="modelops-routes"'},
            )
        if not self._spend(key):
            return self._too_many("this route table is asked for too often; retry later")
        table = self.table(key)
        if table is None:
            return aiohttp.web.Response(status=404, text="no route table\n")
        if table.version == int(after_text) and not self.closed and not self._may_park(key):
            return self._too_many("too many waiting polls for this route table; retry later")
        answer = await self.wait(key, int(after_text))
        if answer is None:
            return aiohttp.web.Response(status=304)
        return aiohttp.web.Response(
            text=answer.model_dump_json(by_alias=True), content_type="application/json"
        )


def _bad(text: str) -> aiohttp.web.Response:
    return aiohttp.web.Response(status=400, text=f"{text}\n")
