"""Demand for a revision at zero: HAProxy's hold action tells the agent, the agent tells the
operator (`POST <routes URL>/demand`) at once, so the wake never waits for a metrics interval.

HAProxy's hold action (render/hold.py) posts `/demand?event=held|served|timedOut&ms=N` to the
agent on loopback: a request is held (again every second while it waits), a held request got
its response after N ms, or it was answered 503 / UNAVAILABLE after the hold time. Only
loopback may post (HAProxy runs in the same pod); anything else is refused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp
import aiohttp.web
from pydantic import ValidationError

from ..api.routes import DemandEvent, DemandReport

logger = logging.getLogger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "::1"})
HELD_EVERY_SECONDS = 0.5  # held reports are coalesced: HAProxy repeats them while it holds
ATTEMPTS = 6

# Sends one report to the operator; True once it was accepted.
DemandSink = Callable[[DemandReport], Awaitable[bool]]


def operator_sink(url: str, session: aiohttp.ClientSession, token: str | None) -> DemandSink:
    """POST reports to the operator's `/routes/<namespace>/<name>/demand` with the router's
    token. A standby replica answers 503; every report is a connection of its own, so the
    operator's Service (per-connection balancing) sends the next attempt to any replica,
    not back to the same standby."""
    headers = {"Connection": "close", **({"Authorization": f"Bearer {token}"} if token else {})}

    async def send(report: DemandReport) -> bool:
        body = report.model_dump_json(by_alias=True)
        timeout = aiohttp.ClientTimeout(total=5)
        try:
            async with session.post(
                url,
                data=body,
                headers={**headers, "Content-Type": "application/json"},
                timeout=timeout,
            ) as resp:
                return resp.status == 202
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("demand report failed: %r", exc)
            return False

    return send


class DemandRelay:
    """Takes HAProxy's pokes, coalesces held ones, forwards each report to the operator."""

    def __init__(self, sink: DemandSink | None) -> None:
        self.sink = sink
        self.last_held = -HELD_EVERY_SECONDS
        self.forwarded: list[DemandReport] = []  # what reached the operator (for /metrics, tests)
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        """`POST /demand?event=...&ms=...` from HAProxy in this pod."""
        if request.remote not in LOOPBACK:
            return aiohttp.web.Response(status=403, text="only HAProxy in this pod reports\n")
        try:
            ms = float(request.query.get("ms", "0"))
            report = DemandReport(
                event=DemandEvent(request.query.get("event", "")), seconds=ms / 1000
            )
        except (ValueError, ValidationError):
            return aiohttp.web.Response(status=400, text="event=held|served|timedOut&ms=N\n")
        self.take(report)
        return aiohttp.web.Response(status=204)

    def take(self, report: DemandReport) -> None:
        """Forward `report` in the background (held ones at most every HELD_EVERY_SECONDS)."""
        if report.event == DemandEvent.HELD:
            now = time.monotonic()
            if now - self.last_held < HELD_EVERY_SECONDS:
                return
            self.last_held = now
        task = asyncio.create_task(self._forward(report))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(self, report: DemandReport) -> None:
        if self.sink is None:
            return
        for attempt in range(ATTEMPTS):
            if await self.sink(report):
                self.forwarded.append(report)
                del self.forwarded[:-100]
                logger.info("reported %s (%.3f s) to the operator", report.event, report.seconds)
                return
            await asyncio.sleep(0.05 * (attempt + 1))
        if report.event == DemandEvent.HELD:
            self.last_held = -HELD_EVERY_SECONDS  # the next poke tries again at once
        logger.warning("the operator did not take the %s report", report.event)

    async def close(self) -> None:
        """Cancel reports still in flight."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
