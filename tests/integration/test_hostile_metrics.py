"""A pod that serves a hostile /metrics page cannot stall the operator: the page is parsed off
the event loop, keeps only Triton's families, and holds a bounded number of label values, while
the operator's own /healthz keeps answering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import aiohttp.web
import pytest

from modelops_builder.triton_local import free_port
from modelops_operator.metrics.sample import MAX_REASONS, OTHER_REASON
from modelops_operator.metrics.scrape import MAX_BODY_BYTES, Scraped, scrape_pod
from modelops_operator.observability import MetricsServer, OperatorMetrics

FAILURE_LINE = 'nv_inference_request_failure{{model="m",version="1",reason="R{index:08d}"}} 1'


def hostile_page() -> tuple[str, int]:
    """Just under the scrape's size cap: distinct failure reasons, one per line, plus noise."""
    lines = [
        "# TYPE nv_inference_request_failure counter",
        'nv_inference_request_success{model="m",version="1"} 5',
    ]
    size, index = 0, 0
    while size < MAX_BODY_BYTES - 200:
        line = FAILURE_LINE.format(index=index) if index % 2 == 0 else f"junk_series_{index} 1"
        lines.append(line)
        size += len(line) + 1
        index += 1
    return "\n".join(lines) + "\n", (index + 1) // 2


@pytest.fixture
async def hostile_pod() -> AsyncIterator[tuple[str, int]]:
    """A 'pod' whose metrics port serves the hostile page."""
    text, failures = hostile_page()

    async def metrics(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text=text)

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get("/metrics", metrics)])
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/metrics", failures
    finally:
        await runner.cleanup()


async def test_a_hostile_page_is_bounded_and_healthz_answers_meanwhile(
    hostile_pod: tuple[str, int],
) -> None:
    url, failures = hostile_pod

    async def alive() -> bool:
        return True

    server = MetricsServer(OperatorMetrics(), {"alive": alive})
    await server.start("127.0.0.1", 0)
    answered_during_scrape = 0
    try:
        async with aiohttp.ClientSession() as session:
            scrape = asyncio.create_task(scrape_pod(session, "pod", url, model="m", timeout_s=60))
            while not scrape.done():
                async with session.get(f"http://127.0.0.1:{server.port}/healthz") as response:
                    assert response.status == 200
                if not scrape.done():
                    answered_during_scrape += 1
                await asyncio.sleep(0.02)
            result = await scrape
    finally:
        await server.stop()
    assert isinstance(result, Scraped), result
    reasons = result.sample.counters.failures_by_reason
    assert len(reasons) == MAX_REASONS + 1  # the first ones, then everything else together
    assert reasons[OTHER_REASON] == failures - MAX_REASONS
    assert result.sample.counters.failure == failures  # nothing lost, only folded
    # The event loop stayed free while the page was parsed: /healthz kept answering.
    assert answered_during_scrape >= 3
