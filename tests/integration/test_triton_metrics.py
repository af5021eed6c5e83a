"""Scraper, interval maths and canary analysis against two real Triton servers on loopback.

One server runs a healthy `resnet`, the other a faulty `resnet` (every 4th execute fails, each
sleeps 30 ms): the stable and the canary revision of one ModelDeployment. The tests drive a
bounded load with gRPC, scrape before and after, and check figures and verdicts. The scraper's
failure paths and the Prometheus client run against small aiohttp servers on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web

from modelops_builder import triton_local
from modelops_operator.api import CanarySpec
from modelops_operator.decide.analysis import Verdict, analyse
from modelops_operator.metrics.prometheus import Target, queries, query_figures
from modelops_operator.metrics.scrape import (
    MetricsTracker,
    Missing,
    MissingReason,
    Poll,
    Scraped,
    new_session,
    scrape_pod,
)
from tests.support.triton_models import INPUT_NAME, WIDTH, write_model

MODEL = "resnet"
FAIL_EVERY = 4
SLEEP_S = 0.03
SPEC = CanarySpec(max_error_rate=0.01, max_p99_latency_ms=1000, failure_threshold=2)


def _start(repo: Path) -> Iterator[Any]:
    # A tritonserver that does not start (or a model it cannot load) fails the test.
    server = triton_local.start_triton(repo)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    repo = tmp_path_factory.mktemp("healthy")
    write_model(repo, MODEL)
    yield from _start(repo)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    repo = tmp_path_factory.mktemp("faulty")
    write_model(repo, MODEL, fail_every=FAIL_EVERY, sleep_s=SLEEP_S)
    yield from _start(repo)


def drive(grpc_url: str, requests: int) -> int:
    """Send `requests` sequential gRPC inferences (binary tensors); return how many failed."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(grpc_url)
    failed = 0
    try:
        for i in range(requests):
            inp = grpcclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
            inp.set_data_from_numpy(np.full((1, WIDTH), i, dtype=np.float32))
            try:
                client.infer(MODEL, [inp])
            except InferenceServerException:
                failed += 1
    finally:
        client.close()
    return failed


async def _interval(
    tracker: MetricsTracker, targets: dict[str, str], load: Callable[[], Any]
) -> Poll:
    async with new_session() as session:
        await tracker.poll(session, targets)
        await asyncio.to_thread(load)
        return await tracker.poll(session, targets)


@pytest.mark.triton
async def test_healthy_revision_passes(healthy: Any) -> None:
    tracker = MetricsTracker(model=MODEL)
    targets = {"healthy-0": healthy.metrics_url}
    async with new_session() as session:
        first = await tracker.poll(session, targets)
        assert first.missing["healthy-0"].reason == MissingReason.BASELINE
        assert first.aggregate is None
        assert await asyncio.to_thread(drive, healthy.grpc_url, 40) == 0
        poll = await tracker.poll(session, targets)
    f = poll.figures["healthy-0"]
    assert poll.complete
    assert f.requests == 40
    assert f.requests_per_second > 0
    assert f.error_rate == 0.0
    assert f.avg_queue_us is not None
    assert 0 < f.avg_queue_us < 1_000_000
    assert f.avg_batch == pytest.approx(1.0)
    assert f.p99_ms is not None
    assert 0 < f.p99_ms < 1000
    assert analyse(poll.aggregate, SPEC).verdict == Verdict.PASS


@pytest.mark.triton
async def test_faulty_revision_fails_on_error_rate_and_latency(faulty: Any) -> None:
    tracker = MetricsTracker(model=MODEL)
    targets = {"canary-0": faulty.metrics_url}
    failed: list[int] = []
    poll = await _interval(tracker, targets, lambda: failed.append(drive(faulty.grpc_url, 40)))
    f = poll.figures["canary-0"]
    assert failed == [10]
    assert f.requests == 40
    assert f.failures_by_reason["BACKEND"] == 10
    assert f.error_rate == pytest.approx(1 / FAIL_EVERY)
    assert f.p99_ms is not None
    assert f.p99_ms >= SLEEP_S * 1000
    result = analyse(f, SPEC)
    assert result.verdict == Verdict.FAIL
    assert result.reasons[0].startswith("errorRate 0.25 > maxErrorRate 0.01 (10 of 40")
    slow = analyse(f, CanarySpec(max_error_rate=0.5, max_p99_latency_ms=10))
    assert slow.verdict == Verdict.FAIL
    assert slow.reasons[0].startswith("p99LatencyMs ")
    assert slow.reasons[0].endswith("> maxP99LatencyMs 10")


@pytest.mark.triton
async def test_idle_interval_is_inconclusive_and_pods_aggregate(healthy: Any, faulty: Any) -> None:
    tracker = MetricsTracker(model=MODEL)
    targets = {"stable-0": healthy.metrics_url, "canary-0": faulty.metrics_url}
    idle = await _interval(tracker, targets, lambda: None)
    assert idle.aggregate is not None
    assert idle.aggregate.pods == 2
    result = analyse(idle.aggregate, SPEC)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.note is not None
    assert "canary received no traffic" in result.note

    def both() -> None:
        drive(healthy.grpc_url, 36)
        drive(faulty.grpc_url, 12)

    busy = await _interval(tracker, targets, both)
    agg = busy.aggregate
    assert agg is not None
    assert agg.requests == 48
    assert agg.error_rate == pytest.approx(3 / 48)  # weighted, not the mean of 0 and 0.25
    assert agg.requests_per_second == pytest.approx(
        sum(f.requests_per_second for f in busy.figures.values())
    )


# --- scraper failure paths and the Prometheus client, on small loopback servers ----------


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[str]:
    good = 'nv_inference_request_success{model="resnet",version="1"} 7\n'

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text=good)

    async def streamed(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(80):  # 5 MiB in 64 KiB chunks, no Content-Length
            await resp.write(b"#" * 65536)
        await resp.write_eof()
        return resp

    def fixed(**kw: Any) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(**kw)

        return handler

    async def prometheus(request: web.Request) -> web.Response:
        query = request.query["query"]
        value = {"pods": "2", "successes": "90", "failures": "10"}
        key = next((k for k in value if k in query), None)
        if "nv_inference_request_failure" in query and "by (reason)" in query:
            result = [{"metric": {"reason": "BACKEND"}, "value": [0, "10"]}]
        elif "count by (pod)" in query:
            result = [{"metric": {}, "value": [0, value["pods"]]}]
        elif "increase(nv_inference_request_success" in query:
            result = [{"metric": {}, "value": [0, value["successes"]]}]
        else:
            result = [] if key is None else [{"metric": {}, "value": [0, "0"]}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    app = web.Application()
    app.router.add_get("/good", fixed(text=good))
    app.router.add_get("/huge", fixed(body=b"#" * 5_000_000))
    app.router.add_get("/streamed", streamed)
    app.router.add_get("/garbage", fixed(text="<html>{ nope\n"))
    app.router.add_get("/slow", slow)
    app.router.add_get("/api/v1/query", prometheus)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/missing", MissingReason.HTTP_STATUS),
        ("/huge", MissingReason.TOO_LARGE),
        ("/streamed", MissingReason.TOO_LARGE),
        ("/garbage", MissingReason.PARSE),
        ("/slow", MissingReason.TIMEOUT),
    ],
)
async def test_scrape_failures_become_missing(fake: str, path: str, reason: MissingReason) -> None:
    async with new_session() as session:
        result = await scrape_pod(session, "p", fake + path, timeout_s=0.3)
    assert isinstance(result, Missing)
    assert result.reason == reason


async def test_unreachable_pod_is_missing() -> None:
    async with new_session() as session:
        down = await scrape_pod(session, "p", "http://127.0.0.1:9/metrics", timeout_s=1)
    assert isinstance(down, Missing)
    assert down.reason == MissingReason.UNREACHABLE


async def test_good_page_and_tracker_keeps_baseline_across_a_failed_scrape(fake: str) -> None:
    ticks = iter([1.0, 2.0, 3.0])
    tracker = MetricsTracker(model=MODEL, clock=lambda: next(ticks))
    async with new_session() as session:
        good = await scrape_pod(session, "p", fake + "/good", model=MODEL)
        assert isinstance(good, Scraped)
        assert good.sample.counters.success == 7
        await tracker.poll(session, {"p": fake + "/good"})
        bad = await tracker.poll(session, {"p": fake + "/garbage"})
        assert bad.missing["p"].reason == MissingReason.PARSE
        again = await tracker.poll(session, {"p": fake + "/good"})
    # The baseline at t=1 survived the failed scrape at t=2: this interval spans both.
    assert again.figures["p"].seconds == pytest.approx(2.0)


async def test_prometheus_query_figures(fake: str) -> None:
    target = Target(MODEL, "ml")
    assert len(queries(target, 15)) == 11
    async with new_session() as session:
        f = await query_figures(session, fake, target, window_s=15, at=1_700_000_000)
        down = await query_figures(session, "http://127.0.0.1:9", target, window_s=15, at=0)
    assert not isinstance(f, Missing)
    assert f.pods == 2
    assert f.error_rate == pytest.approx(0.1)
    assert isinstance(down, Missing)
