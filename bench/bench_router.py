"""Router benchmark: how exactly the router splits one client's requests, and what it costs.

Split accuracy, against replica weighting, in the same run. Revision 1 answers y = x, revision 2
y = 3x, so each answer says which revision served it. One keep-alive HTTP client (tritonclient,
one pooled connection) and one gRPC channel each send REQUESTS requests at canary weights 10%
and 50%:

- router: the real router (HAProxy from the operator's haproxy.cfg, the real agent) in front of
  one Service stand-in per revision;
- replica weighting (the baseline): one Service stand-in that balances connections over 10 pods
  (9 of revision 1 and 1 of revision 2 for 10%; 5 and 5 for 50%), picking at random the way
  kube-proxy's iptables rules do. Each of TRIALS client sessions opens its own connection.

Overhead at batch 8: throughput of CONCURRENCY keep-alive clients and the p50 of one sequential
client, straight to a tritonserver and through the router to the same tritonserver (the router's
server address is the tritonserver's: in a cluster the Service hop is kube-proxy's in-kernel
rewrite, not a process). The two are measured alternately, ROUNDS times each, for two models:
a trivial one (y = x * 1: the cost is all protocol handling, on the same 2 CPUs the router,
the clients and Triton share, so this is the worst case) and one whose execution takes
MODEL_MS without using the CPU (a stand-in for a GPU model, where the router's CPU is not the
clients' or Triton's).

    .venv/bin/python -m bench.bench_router
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from bench.harness import write_results
from modelops_builder.triton_local import TritonProcess, start_triton
from modelops_operator.router.agent import Endpoint
from tests.support.router_harness import (
    Router,
    ServiceProxy,
    grpc_answers,
    http_answers,
    services,
    settle,
)
from tests.support.triton_models import INPUT_NAME, WIDTH, write_model

MODEL = "m"
REQUESTS = 400
TRIALS = 5
BATCH = 8
CONCURRENCY = 4
SECONDS = 5.0
ROUNDS = 3
SCALE_R2 = 3.0
MODEL_MS = 5.0


def _share(answers: list[Any]) -> float:
    served = [a for a in answers if not isinstance(a, str)]
    return 100.0 * sum(1 for a in served if a == SCALE_R2) / max(1, len(served))


async def split_through_router(
    r1: TritonProcess, r2: TritonProcess, workdir: Path
) -> dict[str, Any]:
    """Canary share per client kind at 10% and 50%, through the router."""
    out: dict[str, Any] = {}
    with services(workdir, {"m-r1": {"p1": r1}, "m-r2": {"p2": r2}}) as proxies:
        front = Router(dict(proxies)).start()
        try:
            for canary in (10, 50):
                await front.route({"m-r1": 100 - canary, "m-r2": canary})
                await settle()
                out[str(canary)] = {
                    "keep_alive_http": _share(
                        await asyncio.to_thread(http_answers, front.http_url, REQUESTS)
                    ),
                    "grpc": _share(await asyncio.to_thread(grpc_answers, front.grpc_url, REQUESTS)),
                }
        finally:
            front.stop()
    return out


def split_by_replicas(r1: TritonProcess, r2: TritonProcess, workdir: Path) -> dict[str, Any]:
    """The same clients against one Service over 10 pods: a session's share is 0% or 100%."""
    out: dict[str, Any] = {}
    for canary in (10, 50):
        new_pods = canary // 10
        pods = {f"r1-{i}": r1 for i in range(10 - new_pods)} | {
            f"r2-{i}": r2 for i in range(new_pods)
        }
        proxy = ServiceProxy(f"replicas-{canary}", pods, workdir, balance="random").start()
        try:
            http = f"127.0.0.1:{proxy.ports['http']}"
            grpc = f"127.0.0.1:{proxy.ports['grpc']}"
            keep_alive = [_share(http_answers(http, REQUESTS // TRIALS)) for _ in range(TRIALS)]
            channel = [_share(grpc_answers(grpc, REQUESTS // TRIALS)) for _ in range(TRIALS)]
        finally:
            proxy.stop()
        out[str(canary)] = {"keep_alive_http_sessions": keep_alive, "grpc_sessions": channel}
    return out


@dataclass
class Direct:
    """A 'Service' whose address is the tritonserver itself (kube-proxy costs no process)."""

    server: TritonProcess

    def endpoint(self) -> Endpoint:
        return Endpoint(
            "127.0.0.1", self.server.http_port, self.server.grpc_port, self.server.metrics_port
        )


def _http_sender(url: str) -> Callable[[], None]:
    client = httpclient.InferenceServerClient(url)
    x = np.ones((BATCH, WIDTH), np.float32)

    def send() -> None:
        tensor = httpclient.InferInput(INPUT_NAME, [BATCH, WIDTH], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        client.infer(MODEL, [tensor])

    return send


def _grpc_sender(url: str) -> Callable[[], None]:
    client = grpcclient.InferenceServerClient(url)
    x = np.ones((BATCH, WIDTH), np.float32)

    def send() -> None:
        tensor = grpcclient.InferInput(INPUT_NAME, [BATCH, WIDTH], "FP32")
        tensor.set_data_from_numpy(x)
        client.infer(MODEL, [tensor])

    return send


def throughput(make: Callable[[], Callable[[], None]]) -> float:
    """Requests per second of CONCURRENCY clients for SECONDS."""
    senders = [make() for _ in range(CONCURRENCY)]
    counts = [0] * CONCURRENCY
    deadline = time.monotonic() + SECONDS

    def loop(index: int) -> None:
        while time.monotonic() < deadline:
            senders[index]()
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / SECONDS


def p50_ms(make: Callable[[], Callable[[], None]], count: int = 400) -> float:
    """Median latency of one sequential client."""
    send = make()
    for _ in range(20):
        send()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        send()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def overhead(server: TritonProcess) -> dict[str, Any]:
    """Direct vs through the router, HTTP and gRPC, alternating."""
    front = Router({"m-r1": Direct(server)}).start()  # type: ignore[dict-item]
    try:
        await front.route({"m-r1": 100})
        await settle()
        paths = {
            "http": (lambda: _http_sender(server.http_url), lambda: _http_sender(front.http_url)),
            "grpc": (lambda: _grpc_sender(server.grpc_url), lambda: _grpc_sender(front.grpc_url)),
        }
        out: dict[str, Any] = {}
        for protocol, (direct, routed) in paths.items():
            rates: dict[str, list[float]] = {"direct": [], "router": []}
            medians: dict[str, list[float]] = {"direct": [], "router": []}
            for _ in range(ROUNDS):
                for label, make in (("direct", direct), ("router", routed)):
                    rates[label].append(await asyncio.to_thread(throughput, make))
                    medians[label].append(await asyncio.to_thread(p50_ms, make))
            direct_rate, router_rate = (
                statistics.median(rates["direct"]),
                statistics.median(rates["router"]),
            )
            direct_p50, router_p50 = (
                statistics.median(medians["direct"]),
                statistics.median(medians["router"]),
            )
            out[protocol] = {
                "direct_rps": round(direct_rate, 1),
                "router_rps": round(router_rate, 1),
                "throughput_ratio": round(router_rate / direct_rate, 3),
                "direct_p50_ms": round(direct_p50, 3),
                "router_p50_ms": round(router_p50, 3),
                "added_p50_ms": round(router_p50 - direct_p50, 3),
            }
        return out
    finally:
        front.stop()


async def run() -> dict[str, Any]:
    """Every figure, in one run."""
    workdir = Path(tempfile.mkdtemp(prefix="modelops-bench-router-"))
    write_model(workdir / "r1", MODEL, scale=1.0)
    write_model(workdir / "r2", MODEL, scale=SCALE_R2)
    write_model(workdir / "timed", MODEL, scale=1.0, sleep_s=MODEL_MS / 1000)
    r1, r2 = start_triton(workdir / "r1"), start_triton(workdir / "r2")
    timed = start_triton(workdir / "timed")
    try:
        return {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "split_router": await split_through_router(r1, r2, workdir),
            "split_replicas_baseline": await asyncio.to_thread(split_by_replicas, r1, r2, workdir),
            "overhead_batch8_trivial_model": await overhead(r1),
            f"overhead_batch8_{MODEL_MS:g}ms_model": await overhead(timed),
        }
    finally:
        for server in (r1, r2, timed):
            server.stop()


def main() -> None:
    """Run, print, save bench/results/router.json."""
    payload = asyncio.run(run())
    path = write_results("router", payload)
    for canary in ("10", "50"):
        router = payload["split_router"][canary]
        replicas = payload["split_replicas_baseline"][canary]
        print(
            f"canary {canary}%: router keep-alive {router['keep_alive_http']:.1f}% "
            f"gRPC {router['grpc']:.1f}%; replica weighting per session keep-alive "
            f"{replicas['keep_alive_http_sessions']} gRPC {replicas['grpc_sessions']}"
        )
    for model in (key for key in payload if key.startswith("overhead_")):
        for protocol, figures in payload[model].items():
            print(
                f"{model} {protocol}: {figures['throughput_ratio']}x direct throughput, "
                f"+{figures['added_p50_ms']} ms p50"
            )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
