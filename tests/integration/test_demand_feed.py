"""The wake signal's path, hostile cases included: HAProxy's pokes -> the agent's relay -> the
operator's `POST /routes/<namespace>/<name>/demand` (its token, the leader only, bounded body)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import aiohttp.web
import pytest

from modelops_operator.api.routes import DemandEvent, DemandReport
from modelops_operator.handlers.demand_feed import DemandFeed
from modelops_operator.handlers.route_feed import RouteFeed
from modelops_operator.router.demand import DemandRelay, operator_sink
from tests.support.kubernetes_emulator import eventually
from tests.support.route_feed_server import KEY, table_token

Key = tuple[str, str]


class Operator:
    """The leader's side: what was noted, and whether this replica leads."""

    def __init__(self) -> None:
        self.leading = True
        self.noted: list[tuple[Key, DemandReport]] = []

    async def note(self, key: Key, report: DemandReport) -> None:
        self.noted.append((key, report))


@contextlib.asynccontextmanager
async def serving(
    app: aiohttp.web.Application,
) -> AsyncIterator[str]:
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def operator_url() -> AsyncIterator[tuple[str, Operator]]:
    op = Operator()
    routes = RouteFeed(lambda _: None, KEY)
    feed = DemandFeed(routes, lambda: op.leading, op.note)
    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.post("/routes/{namespace}/{name}/demand", feed.handle)])
    async with serving(app) as base:
        yield f"{base}/routes/ml/resnet/demand", op


HELD = DemandReport(event=DemandEvent.HELD, seconds=0.2).model_dump_json(by_alias=True)


async def _post(url: str, body: str | bytes, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as resp,
    ):
        return resp.status


@pytest.mark.parametrize(
    ("body", "token", "status"),
    [
        (HELD, None, 401),
        (HELD, table_token("ml", "other"), 401),  # another table's router
        (HELD, "not-a-token", 401),
        ('{"event": "explode"}', table_token("ml", "resnet"), 400),
        ('{"event": "held", "seconds": -1}', table_token("ml", "resnet"), 400),
        ("x" * 10_000, table_token("ml", "resnet"), 413),
        (HELD, table_token("ml", "resnet"), 202),
    ],
    ids=["no-token", "other-table", "bad-token", "bad-event", "negative", "too-big", "ok"],
)
async def test_the_operator_takes_only_its_routers_well_formed_reports(
    operator_url: tuple[str, Operator], body: str, token: str | None, status: int
) -> None:
    url, op = operator_url
    assert await _post(url, body, token) == status
    assert len(op.noted) == (1 if status == 202 else 0)


async def test_a_standby_replica_refuses_so_the_agent_retries_elsewhere(
    operator_url: tuple[str, Operator],
) -> None:
    url, op = operator_url
    op.leading = False
    assert await _post(url, HELD, table_token("ml", "resnet")) == 503
    assert op.noted == []


async def test_the_relay_forwards_haproxys_pokes_coalescing_held_ones(
    operator_url: tuple[str, Operator],
) -> None:
    url, op = operator_url
    async with aiohttp.ClientSession() as session:
        relay = DemandRelay(operator_sink(url, session, table_token("ml", "resnet")))
        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.post("/demand", relay.handle)])
        async with serving(app) as agent:
            for query in ("event=held&ms=0", "event=held&ms=20", "event=served&ms=3400"):
                async with session.post(f"{agent}/demand?{query}") as resp:
                    assert resp.status == 204
            async with session.post(f"{agent}/demand?event=nonsense&ms=1") as resp:
                assert resp.status == 400
            await eventually(lambda: len(op.noted) == 2, 5, "two reports")
        await relay.close()
    events = [report.event for _, report in op.noted]
    assert events == [DemandEvent.HELD, DemandEvent.SERVED]
    assert op.noted[1][1].seconds == pytest.approx(3.4)
    await asyncio.sleep(0)
