"""Scale to zero on kmock with the real parts: the operator, the real router (HAProxy from the
operator's config with its hold action, the agent fed by the operator's route feed), and a
stand-in kubelet that starts a real tritonserver when the revision's Deployment asks for a pod
and stops it when it asks for none.

kmock has no kubelet: `Kubelet` follows the Deployment's spec.replicas (0 or 1) and does what
one would: start the container (a fresh tritonserver: its own start and model load are the cold
start), report the pod Ready, add it to the revision's Service (the ServiceProxy), and the
reverse on scale-down. It stamps each step's time for the benchmark's breakdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops_builder.triton_local import TritonProcess, free_port, start_triton
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name, router_name
from modelops_operator.render.tokens import route_token
from modelops_operator.settings import Settings
from tests.support.engine_store import engine_server
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.routed_cluster import (
    NAME,
    ROUTER_IP,
    Stage,
    canary_spec,
    metrics_by_ip,
    run_validation_job,
    runs,
)
from tests.support.router_harness import FedRouter, ServiceProxy, fed_router, services
from tests.support.triton_models import WIDTH

Obj = dict[str, Any]
POD_IP = "10.1.0.1"
STEP_SECONDS = 0.02


def zero_spec(idle_seconds: int, cold_start_timeout: int) -> Obj:
    """One revision behind the router, minReplicas 0, scaled on inferences/s."""
    spec = canary_spec("a" * 64)
    spec["scaling"] = {
        "minReplicas": 0,
        "maxReplicas": 2,
        "metric": "inferencesPerSecond",
        "target": 10_000,
        "idleSeconds": idle_seconds,
        "coldStartTimeoutSeconds": cold_start_timeout,
    }
    return spec


@dataclass
class Kubelet:
    """Runs revision 1's pod as its Deployment asks: a real tritonserver per pod start."""

    cluster: Cluster
    proxy: ServiceProxy
    model_root: Path
    metrics: dict[str, str]  # pod IP -> metrics URL (the operator's metrics_url reads it)
    deployment: str = revision_name(NAME, 1)
    server: TritonProcess | None = None
    stuck: bool = False  # pods never start (a cold start that times out)
    starts: int = 0
    marks: dict[str, float] = field(default_factory=dict)  # step -> monotonic time, last wake
    _pod: str | None = None
    _stopping: set[asyncio.Task[None]] = field(default_factory=set)

    def wanted(self) -> int:
        dep = self.cluster.get(r.DEPLOYMENTS, self.deployment)
        return int((dep or {}).get("spec", {}).get("replicas", 0) or 0) if dep else 0

    async def run(self, stop: asyncio.Event) -> None:
        """Follow spec.replicas until stopped; the pod is stopped at the end."""
        try:
            while not stop.is_set():
                want = self.wanted()
                if want > 0 and self.server is None and not self.stuck:
                    await self.start_pod()
                elif want == 0 and self.server is not None:
                    await self.stop_pod()
                await asyncio.sleep(STEP_SECONDS)
        finally:
            if self.server is not None:
                await asyncio.to_thread(self.server.stop, 10.0)
            await asyncio.gather(*self._stopping)

    async def start_pod(self) -> None:
        """Container start (tritonserver loads the model), Ready, into the Service."""
        self.marks = {"replicas_set": time.monotonic()}
        self.server = await asyncio.to_thread(start_triton, self.model_root)
        self.marks["triton_ready"] = time.monotonic()
        self.starts += 1
        self.metrics[POD_IP] = self.server.metrics_url
        self.proxy.add_endpoint(f"pod{self.starts}", self.server)
        pod = await self.cluster.add_pod(self.deployment, POD_IP, index=self.starts)
        self._pod = pod["metadata"]["name"]
        await self.cluster.ready_deployment(self.deployment)
        self.marks["pod_ready"] = time.monotonic()

    async def stop_pod(self) -> None:
        """Out of the Service, the pod deleted, tritonserver stopped."""
        assert self.server is not None
        self.proxy.remove_endpoint(f"pod{self.starts}")
        if self._pod is not None:
            await self.cluster.delete(r.PODS, self._pod)
        await self.cluster.ready_deployment(self.deployment)
        server, self.server = self.server, None
        self.metrics.pop(POD_IP, None)
        # The old container stops on its own time, as a kubelet's does: a new pod never waits.
        task = asyncio.create_task(asyncio.to_thread(server.stop, 10.0))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)


@dataclass
class ZeroStage:
    """What a scale-to-zero test or benchmark drives."""

    stage: Stage
    kubelet: Kubelet
    router: FedRouter
    operator: Any  # the running Operator (benchmarks time its steps)
    scrapes: list[tuple[float, str]]  # (monotonic time, pod IP) of every metrics read

    @property
    def cluster(self) -> Cluster:
        return self.stage.cluster

    def status(self) -> Obj:
        return self.stage.status()

    def phase(self) -> str | None:
        return self.status().get("phase")

    def events(self, reason: str) -> list[str]:
        return [
            e.get("message", "") for e in self.cluster.events(NAME) if e.get("reason") == reason
        ]


@contextlib.asynccontextmanager
async def zero_stage(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    workdir: Path,
    model_root: Path,
    start_operator: Callable[..., contextlib.AbstractAsyncContextManager[Any]],
    *,
    idle_seconds: int = 2,
    cold_start_timeout: int = 60,
    spec_patch: Mapping[str, Any] | None = None,
) -> AsyncIterator[ZeroStage]:
    """Revision 1 serving through the router with minReplicas 0; the kubelet running."""
    port = free_port()
    feed = f"http://127.0.0.1:{port}/routes/default/{NAME}"
    metrics: dict[str, str] = {}
    scrapes: list[tuple[float, str]] = []
    by_ip = metrics_by_ip(metrics)

    def metrics_url(pod: Mapping[str, Any]) -> str:
        scrapes.append((time.monotonic(), str((pod.get("status") or {}).get("podIP") or "")))
        del scrapes[:-10_000]
        return by_ip(pod)

    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(engine_server(store, workdir / "inbox"))
        routed = settings.model_copy(
            update={"routes_url": f"http://127.0.0.1:{port}", "store_server": server}
        )
        proxies = stack.enter_context(services(workdir, {revision_name(NAME, 1): {}}))
        token = route_token(routed, "default", NAME)
        router = await stack.enter_async_context(fed_router(proxies, feed, token))
        metrics[ROUTER_IP] = router.figures_url
        operator = await stack.enter_async_context(
            start_operator(
                settings=routed,
                metrics_url=metrics_url,
                metrics_host="127.0.0.1",
                metrics_port=port,
            )
        )
        kubelet = Kubelet(cluster, proxies[revision_name(NAME, 1)], model_root, metrics)
        task = asyncio.create_task(kubelet.run(stop))
        stack.push_async_callback(_stop_task, stop, task)
        stage = Stage(cluster, store, routed, workdir, router, proxies, {})
        # Awake until the router serves revision 1; then idle after `idle_seconds`.
        spec = zero_spec(3600, cold_start_timeout)
        spec.update(spec_patch or {})
        await cluster.create_md(NAME, spec)
        await stage.build("a" * 64, WIDTH)
        await eventually(lambda: kubelet.server is not None, 60, "revision 1's first pod")
        assert kubelet.server is not None
        await _router_pod(cluster)
        job = f"{NAME}-validate-r1"
        await eventually(lambda: cluster.get(r.JOBS, job), what="validation Job")
        await run_validation_job(cluster, job, {POD_IP: kubelet.server}, store, workdir)
        await eventually(lambda: runs(stage, {1: 100}), 30, "router runs r1 100%")
        await cluster.update_spec(NAME, {"scaling": {"idleSeconds": idle_seconds}})
        yield ZeroStage(stage, kubelet, router, operator, scrapes)


async def _stop_task(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


async def _router_pod(cluster: Cluster) -> None:
    router = router_name(NAME)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, router), what="router Deployment")
    await cluster.add_pod(router, ROUTER_IP)
    await cluster.ready_deployment(router)
