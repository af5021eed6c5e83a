"""The traffic router for real: HAProxy from the operator's config, the real router agent, real
Triton servers behind Service stand-ins, and the clients users run (tritonclient HTTP with its
keep-alive connection, one gRPC channel, short-lived connections)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops_builder.triton_local import TritonProcess, start_triton
from tests.support.router_harness import (
    count_by,
    grpc_answers,
    http_answers,
    router,
    services,
    settle,
)
from tests.support.triton_models import WIDTH, write_model

pytestmark = pytest.mark.triton

MODEL = "m"
# y = x * scale: the answer tells which revision served it.
SCALES = {"m-r1": 1.0, "m-r2": 3.0}


@pytest.fixture(scope="module")
def tritons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TritonProcess]]:
    """r1 and r2 answer differently; r3 expects 3 inputs, so every client request is a 400."""
    root = tmp_path_factory.mktemp("tritons")
    write_model(root / "r1", MODEL, scale=SCALES["m-r1"])
    write_model(root / "r2", MODEL, scale=SCALES["m-r2"])
    write_model(root / "r3", MODEL, width=WIDTH - 1)
    servers = {name: start_triton(root / name) for name in ("r1", "r2", "r3")}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop(10.0)


@pytest.mark.parametrize("canary", [10, 50])
async def test_one_keep_alive_client_is_split_by_request(
    tritons: dict[str, TritonProcess], tmp_path: Path, canary: int
) -> None:
    layout = {"m-r1": {"p1": tritons["r1"]}, "m-r2": {"p2": tritons["r2"]}}
    with services(tmp_path, layout) as proxies:
        async with router(proxies) as front:
            await front.route({"m-r1": 100 - canary, "m-r2": canary})
            await settle()
            for answers in (
                await asyncio.to_thread(http_answers, front.http_url, 200),
                await asyncio.to_thread(grpc_answers, front.grpc_url, 200),
            ):
                seen = count_by(answers)
                share = 100 * seen.get(SCALES["m-r2"], 0) / len(answers)
                assert abs(share - canary) <= 3, seen


async def test_weight_changes_under_load_fail_no_request(
    tritons: dict[str, TritonProcess], tmp_path: Path
) -> None:
    layout = {"m-r1": {"p1": tritons["r1"]}, "m-r2": {"p2": tritons["r2"]}}
    with services(tmp_path, layout) as proxies:
        async with router(proxies) as front:
            await front.route({"m-r1": 100, "m-r2": 0})
            await settle()
            results: list[list[Any]] = []
            stop = threading.Event()

            def load(kind: str) -> None:
                while not stop.is_set():
                    if kind == "grpc":
                        results.append(grpc_answers(front.grpc_url, 20))
                    else:
                        results.append(http_answers(front.http_url, 20, kind == "keep-alive"))

            threads = [
                threading.Thread(target=load, args=(k,)) for k in ("keep-alive", "grpc", "short")
            ]
            for thread in threads:
                thread.start()
            try:
                for canary in (10, 25, 50, 75, 100, 50, 0, 90, 10, 0):
                    await front.route({"m-r1": 100 - canary, "m-r2": canary})
                    await asyncio.sleep(0.3)
            finally:
                stop.set()
                for thread in threads:
                    await asyncio.to_thread(thread.join, 30)
            answers = [a for batch in results for a in batch]
            errors = [a for a in answers if isinstance(a, str)]
            assert len(answers) > 200
            assert errors == [], errors[:3]
            assert set(answers) == {SCALES["m-r1"], SCALES["m-r2"]}


async def test_rejected_requests_are_counted_per_revision(
    tritons: dict[str, TritonProcess], tmp_path: Path
) -> None:
    """Triton rejects a wrong shape before its scheduler (its own counters stay at 0): the
    router's count is what lets the analysis see it, for HTTP (400) and gRPC (status 3)."""
    layout = {"m-r1": {"p1": tritons["r1"]}, "m-r3": {"p3": tritons["r3"]}}
    with services(tmp_path, layout) as proxies:
        async with router(proxies) as front:
            await front.route({"m-r1": 50, "m-r3": 50})
            await settle()
            http_seen = await asyncio.to_thread(http_answers, front.http_url, 40)
            grpc_seen = await asyncio.to_thread(grpc_answers, front.grpc_url, 40)
            assert front.agent is not None
            await front.agent.count()
            totals = front.agent.ledger.totals
            http_errors = sum(1 for a in http_seen if isinstance(a, str))
            grpc_errors = sum(1 for a in grpc_seen if isinstance(a, str))
            assert http_errors == 20
            assert grpc_errors == 20
            assert totals[(3, "http")].responses["4xx"] == 20
            assert totals[(3, "grpc")].grpc_errors == 20
            assert totals[(1, "http")].responses["2xx"] == 20
            assert totals[(1, "grpc")].grpc_errors == 0
