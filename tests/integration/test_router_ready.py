"""Ready means every client is balanced per request (Router mode), on a Service that balances
connections as kube-proxy does.

The whole operator on kmock; revision 1's two pods are two real tritonservers behind their
revision Service; the real router (HAProxy from the operator's config, the agent long-polling
the operator's route feed) starts its pod a moment after its Deployment appears, as a pod
does. The ModelDeployment's Service `m` is played by a connection balancer whose endpoints
follow the Service's selector and its pods' readiness one second late, and that keeps every
open connection where it was when the selector changes (conntrack). A keep-alive HTTP client
and a gRPC channel are opened the moment Ready turns True: both must reach every Triton pod,
with no failed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families

from modelops_builder.triton_local import TritonProcess, free_port, start_triton
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import (
    build_job_name,
    revision_name,
    router_name,
    validation_job_name,
)
from modelops_operator.render.tokens import route_token
from modelops_operator.settings import Settings
from tests.support.engine_store import engine_server
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import RunOperator, finish_source, key_of, summary
from tests.support.routed_cluster import metrics_by_ip, publish_entry, run_validation_job
from tests.support.router_harness import fed_router, services
from tests.support.service_follower import Backend, followed_service
from tests.support.triton_models import INPUT_NAME, WIDTH, write_model

pytestmark = pytest.mark.triton

NAME = "m"
POD_IPS = ("10.1.0.1", "10.1.0.2")
ROUTER_IP = "10.99.0.1"
ROUTER_START_SECONDS = 1.5  # from the router Deployment's creation to its pod's readiness
CALLS = 40


@pytest.fixture(scope="module")
def tritons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TritonProcess]]:
    """Revision 1's two pods: y = x on two tritonservers."""
    root = tmp_path_factory.mktemp("ready-tritons")
    write_model(root / "models", NAME, scale=1.0)
    servers = {ip: start_triton(root / "models") for ip in POD_IPS}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop(10.0)


def served(server: TritonProcess) -> float:
    """Inferences the tritonserver answered so far."""
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("nv_inference_request_success")
    )


def spec() -> dict[str, Any]:
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": "a" * 64}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 2},
        "rollout": {"strategy": "Recreate", "traffic": {"mode": "Router"}},
    }


def ready(cluster: Cluster) -> bool:
    conditions = (cluster.md(NAME).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class Clients:
    """A keep-alive HTTP client and a gRPC channel to the Service; each lives on one thread of
    its own (the HTTP client is greenlet-based and stays on the thread that made it)."""

    def __init__(self, url: dict[str, str]) -> None:
        self.url = url
        self.threads = {p: ThreadPoolExecutor(1) for p in ("http", "grpc")}
        self.clients: dict[str, Any] = {}
        self.errors: list[str] = []

    def _call(self, protocol: str) -> None:
        x = np.ones((1, WIDTH), np.float32)
        try:
            if protocol == "http":
                if "http" not in self.clients:
                    self.clients["http"] = httpclient.InferenceServerClient(self.url["http"])
                http = self.clients["http"]
                tensor = httpclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
                tensor.set_data_from_numpy(x, binary_data=True)
                http.infer(NAME, [tensor])
            else:
                if "grpc" not in self.clients:
                    self.clients["grpc"] = grpcclient.InferenceServerClient(self.url["grpc"])
                grpc = self.clients["grpc"]
                tensor_g = grpcclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
                tensor_g.set_data_from_numpy(x)
                grpc.infer(NAME, [tensor_g])
        except Exception as exc:
            self.errors.append(f"{protocol}: {exc}")

    async def call(self, protocol: str, times: int = 1) -> None:
        """`times` calls on the protocol's one connection."""
        loop = asyncio.get_running_loop()
        for _ in range(times):
            await loop.run_in_executor(self.threads[protocol], self._call, protocol)

    def close(self) -> None:
        for protocol, thread in self.threads.items():
            if protocol in self.clients:
                thread.submit(self.clients[protocol].close).result()
            thread.shutdown()


async def kubelet(cluster: Cluster) -> None:
    """Revision 1's pods start at once; the router's pod a moment after its Deployment."""
    deployment = revision_name(NAME, 1)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, deployment), what=deployment)
    for index, ip in enumerate(POD_IPS):
        await cluster.add_pod(deployment, ip, index=index)
    await cluster.ready_deployment(deployment)
    router = router_name(NAME)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, router), what="router Deployment")
    await asyncio.sleep(ROUTER_START_SECONDS)
    await cluster.add_pod(router, ROUTER_IP)
    await cluster.ready_deployment(router)


@contextlib.asynccontextmanager
async def stage(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    run_operator: RunOperator,
    tritons: dict[str, TritonProcess],
    workdir: Path,
) -> AsyncIterator[dict[str, str]]:
    """The operator, the router, the Services; yields the Service `m`'s client addresses."""
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(engine_server(store, workdir / "inbox"))
        routed = settings.model_copy(
            update={
                "routes_url": f"http://127.0.0.1:{port}",
                "store_server": server,
                "drain_seconds": 2,
            }
        )
        proxies = stack.enter_context(services(workdir, {revision_name(NAME, 1): tritons}))
        feed = f"http://127.0.0.1:{port}/routes/default/{NAME}"
        token = route_token(routed, "default", NAME)
        router = await stack.enter_async_context(fed_router(proxies, feed, token))
        backends: dict[str, Any] = dict(tritons)
        backends[ROUTER_IP] = Backend(
            router.router.http_url, router.router.grpc_url, router.figures_url
        )
        service = await stack.enter_async_context(
            followed_service(cluster, NAME, backends, workdir)
        )
        urls = {ip: server.metrics_url for ip, server in tritons.items()}
        urls[ROUTER_IP] = router.figures_url
        await stack.enter_async_context(
            run_operator(
                settings=routed,
                metrics_url=metrics_by_ip(urls),
                metrics_host="127.0.0.1",
                metrics_port=port,
            )
        )
        await cluster.create_md(NAME, spec())
        key = key_of(cluster, NAME, routed)
        await finish_source(cluster, routed, NAME)
        job = build_job_name("default", NAME, key)
        build_ns = routed.operator_namespace
        await eventually(lambda: cluster.get(r.JOBS, job, build_ns), what="build Job")
        publish_entry(store, key, WIDTH)
        await cluster.finish_job(job, summary(key), namespace=build_ns)
        pods = stack.enter_context(_running(kubelet(cluster)))
        validation = validation_job_name(NAME, 1)
        await eventually(lambda: cluster.get(r.JOBS, validation), 30, "validation Job")
        await run_validation_job(cluster, validation, tritons, store, workdir)
        yield {
            "http": f"127.0.0.1:{service.ports['http']}",
            "grpc": f"127.0.0.1:{service.ports['grpc']}",
        }
        await pods


@contextlib.contextmanager
def _running(coro: Any) -> Iterator[asyncio.Task[None]]:
    task = asyncio.ensure_future(coro)
    try:
        yield task
    finally:
        task.cancel()


async def test_clients_opened_at_ready_are_balanced_per_request_over_every_pod(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    run_operator: RunOperator,
    tritons: dict[str, TritonProcess],
    tmp_path: Path,
) -> None:
    async with stage(cluster, store, settings, run_operator, tritons, tmp_path) as url:
        await eventually(lambda: ready(cluster), 40, "Ready")
        # The moment Ready turns True: open both connections with a first call each.
        clients = Clients(url)
        try:
            await asyncio.gather(clients.call("http"), clients.call("grpc"))
            by_protocol: dict[str, list[float]] = {}
            for protocol in ("http", "grpc"):
                before = [served(tritons[ip]) for ip in POD_IPS]
                await clients.call(protocol, CALLS)
                after = [served(tritons[ip]) for ip in POD_IPS]
                by_protocol[protocol] = [a - b for a, b in zip(after, before, strict=True)]
        finally:
            clients.close()
    assert clients.errors == [], clients.errors[:3]
    for protocol, counts in by_protocol.items():
        assert sum(counts) == CALLS, (protocol, by_protocol)
        assert all(count > 0 for count in counts), f"{protocol} pinned to one pod: {counts}"
