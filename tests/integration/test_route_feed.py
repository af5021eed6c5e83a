"""Finding 3 of issue 23: the route feed reads a table only to its router, answers bad input with
400, limits each client, and the agent backs off instead of polling in a loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import aiohttp.web

from modelops_operator.handlers.route_feed import FeedLimits
from modelops_operator.router.serve import operator_source
from tests.support.route_feed_server import feed_server, table_token

VICTIM = ("ml", "chat")


async def _get(url: str, token: str | None = None, after: str = "-1") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, params={"after": after}, headers=headers) as resp,
    ):
        return resp.status, await resp.text()


async def test_finding_3_route_feed_reads_a_table_only_to_its_router() -> None:
    async with feed_server() as server:
        server.change(VICTIM, 3, {1: 90, 2: 10})
        server.change(("other", "chat"), 1, {1: 100})
        url = server.url(*VICTIM)
        status, text = await _get(url)
        assert status == 401, text
        assert "token" in text
        assert (await _get(url, "0" * 64))[0] == 401
        # another table's token (the same name in another namespace) opens nothing here
        assert (await _get(url, table_token("other", "chat")))[0] == 401
        status, text = await _get(url, table_token(*VICTIM))
        assert status == 200
        assert '"chat-r2"' in text


async def test_finding_3_route_feed_answers_400_to_bad_input() -> None:
    async with feed_server() as server:
        server.change(VICTIM, 3, {1: 100})
        token = table_token(*VICTIM)
        for after in ("\u00b2", "1e3", "9" * 40, "", "+1", "1.0"):
            status, text = await _get(server.url(*VICTIM), token, after)
            assert status == 400, (after, status)
            assert "`after`" in text
        status, text = await _get(server.url("Bad_NS", "chat"), token)
        assert status == 400
        assert "/routes/<namespace>/<name>" in text


@contextlib.asynccontextmanager
async def _running(*loops: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(loop()) for loop in loops]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_finding_3_parked_polls_leave_each_agent_at_one_poll_per_wait_period() -> None:
    wait = 1.5
    limits = FeedLimits(waiters_per_table=4, waiters_per_namespace=8, waiters_total=40)
    agents = [("ml", f"m{i}") for i in range(3)]
    hostile = [("evil", f"e{i}") for i in range(10)]
    unlimited = aiohttp.TCPConnector(limit=0)
    async with (
        feed_server(limits, wait) as server,
        aiohttp.ClientSession() as session,
        aiohttp.ClientSession(connector=unlimited) as hostile_session,
    ):
        for key in agents + hostile:
            server.change(key, 1, {1: 100})

        async def flood(key: tuple[str, str], token: str | None) -> None:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            while True:  # a hostile client never backs off
                async with hostile_session.get(
                    server.url(*key), params={"after": "1"}, headers=headers
                ) as resp:
                    await resp.read()

        polls = {
            key: operator_source(server.url(*key), session, table_token(*key)) for key in agents
        }
        seen: dict[tuple[str, str], list[tuple[float, int]]] = {key: [] for key in agents}

        def agent(key: tuple[str, str]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                version = 1
                while True:
                    table = await polls[key](version)
                    if table is not None:
                        version = table.version
                        seen[key].append((time.monotonic(), version))

            return run

        floods = [lambda k=k: flood(k, table_token(*k)) for k in hostile for _ in range(20)]
        floods += [lambda k=k: flood(k, None) for k in agents for _ in range(20)]
        async with _running(*floods, *(agent(key) for key in agents)):
            await asyncio.sleep(0.5)  # the flood parks what it may
            assert server.feed.waiting <= limits.waiters_per_namespace + len(agents)
            before = {key: server.requests[key[0], key[1], True] for key in agents}
            window = 4 * wait
            await asyncio.sleep(window / 2)
            changed = time.monotonic()
            server.change(agents[0], 2, {1: 50, 2: 50})
            await asyncio.sleep(window / 2)
            counts = {key: server.requests[key[0], key[1], True] - before[key] for key in agents}
    # one poll per wait period (4), plus the one the change answered
    assert all(count <= 5 for count in counts.values()), counts
    assert counts[agents[0]] >= 2, counts
    # the change reached its agent through the flood within a second
    assert seen[agents[0]]
    assert seen[agents[0]][0][1] == 2
    assert seen[agents[0]][0][0] - changed < 1.0
    # the hostile namespace held at most its budget of parked polls; the rest got 429
    assert server.requests["evil", "e0", True] > 20


async def test_finding_3_agent_backs_off_on_429_and_never_spins_on_early_304() -> None:
    answers: list[int] = []

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        status = 429 if request.match_info["kind"] == "busy" else 304
        answers.append(status)
        return aiohttp.web.Response(status=status, headers={"Retry-After": "3"})

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get("/routes/{kind}/x", handle)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/routes"
    try:
        async with aiohttp.ClientSession() as session:
            for kind in ("busy", "early"):
                poll = operator_source(f"{base}/{kind}/x", session, "t")

                async def loop(poll: Callable[[int], Awaitable[object]] = poll) -> None:
                    while True:
                        assert await poll(0) is None

                async with _running(loop):
                    await asyncio.sleep(3.0)
    finally:
        await runner.cleanup()
    # 429 with Retry-After 3: the second poll waits at least 2.25 s (jitter), so two at most;
    # a 304 that comes at once: one poll a second at most
    assert 1 <= answers.count(429) <= 2, answers
    assert 2 <= answers.count(304) <= 4, answers
