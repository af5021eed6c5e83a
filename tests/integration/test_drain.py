"""Graceful drain for real: Triton processes behind a Service stand-in and the real router, a
pod's termination run as the kubelet runs it (the rendered preStop hook, then SIGTERM, then
SIGKILL at the rendered grace period), and clients that keep sending all along."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelops_builder.triton_local import TritonProcess, start_triton
from tests.support.client_mix import SHORT_LIVED, ClientMix
from tests.support.pod_lifecycle import Termination, terminate_pod, triton_pod_spec
from tests.support.router_harness import router, services, settle
from tests.support.triton_models import write_model

pytestmark = pytest.mark.triton

MODEL = "m"
# The endpoint change reaching kube-proxy: "a fraction of a second, more under load".
PROPAGATION_SECONDS = 0.5


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[dict[str, TritonProcess]]:
    """Two pods of revision 1."""
    write_model(tmp_path / "repo", MODEL)
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(start_triton, tmp_path / "repo") for name in ("a", "b")}
        started = {name: future.result() for name, future in futures.items()}
    try:
        yield started
    finally:
        for server in started.values():
            server.stop(10.0)


async def _remove_pod_under_load(
    pods: dict[str, TritonProcess], workdir: Path, drain_seconds: int
) -> tuple[Termination, ClientMix, ClientMix, float]:
    """Delete pod a while clients send through the router and straight to the Service."""
    spec = triton_pod_spec(drain_seconds)
    with services(workdir, {"m-r1": pods}) as proxies:
        async with router(proxies) as running:
            await running.route({"m-r1": 100})
            await settle()
            service = proxies["m-r1"]
            routed = ClientMix(running.http_url, running.grpc_url, MODEL).start()
            direct = ClientMix(
                f"127.0.0.1:{service.ports['http']}",
                f"127.0.0.1:{service.ports['grpc']}",
                MODEL,
                keep_alive=False,
                grpc=False,
            ).start()
            try:
                await asyncio.sleep(1.0)
                deleted = time.monotonic()
                termination = await asyncio.to_thread(
                    terminate_pod,
                    spec,
                    "triton",
                    pods["a"].process,
                    lambda: service.remove_endpoint("a"),
                    PROPAGATION_SECONDS,
                )
                await asyncio.sleep(1.0)
            finally:
                routed.stop()
                direct.stop()
    return termination, routed, direct, deleted


async def test_a_draining_triton_pod_fails_no_request(
    pods: dict[str, TritonProcess], tmp_path: Path
) -> None:
    termination, routed, direct, deleted = await _remove_pod_under_load(pods, tmp_path, 2)
    assert termination.sigterm >= 2.0, "SIGTERM came before the preStop hook had run"
    assert not termination.killed, "Triton did not finish within the grace period"
    assert termination.left_service < termination.sigterm
    for mix in (routed, direct):
        assert mix.failures() == []
        # Clients were served all along, also while pod a was going away.
        after = mix.between(deleted, deleted + termination.exited)
        assert len(after) > 20
        assert {o.client for o in mix.outcomes} >= {SHORT_LIVED}
    assert {o.client for o in routed.outcomes} == {"short-lived", "keep-alive", "grpc"}


async def test_without_the_drain_short_lived_clients_fail(
    pods: dict[str, TritonProcess], tmp_path: Path
) -> None:
    """The check above can fail: with no preStop hook, SIGTERM lands while the Service still
    sends new connections to the pod, and Triton refuses them."""
    termination, routed, direct, deleted = await _remove_pod_under_load(pods, tmp_path, 0)
    assert termination.sigterm < 0.2
    failed = routed.failures() + direct.failures()
    assert failed, "no request failed without the drain"
    # Caused by the removal: requests that ended after the delete and started before Triton's
    # exit (one in flight at SIGTERM counts; `at` is when a request started).
    window_end = deleted + max(termination.left_service, termination.exited) + 0.5
    outside = [
        round(o.at - deleted, 3)
        for o in failed
        if not (o.at + o.seconds >= deleted and o.at < window_end)
    ]
    assert not outside, (outside, termination)
