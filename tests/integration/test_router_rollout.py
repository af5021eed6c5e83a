"""Rollouts judged by what clients see, end to end: the whole operator on kmock; the real router
(HAProxy from the operator's config and the agent long-polling the operator's route feed); real
tritonservers behind Service stand-ins; validation Jobs run with the operator's own command.

- A canary whose requests Triton rejects in its front end (HTTP 400: Triton's own counters stay
  at 0) is rolled back on the router's figures, within failureThreshold analyses.
- A candidate served wrongly is rolled back by its validation run, with no client request sent
  to it.
- A candidate with another input signature gets no traffic until the user opts in, and is then
  cut over at once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_builder.triton_local import TritonProcess, free_port, start_triton
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import (
    build_job_name,
    revision_name,
    router_name,
    validation_job_name,
)
from modelops_operator.settings import Settings
from tests.support.client_mix import ClientMix
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import RunOperator, condition, key_of, phase, summary
from tests.support.routed_cluster import metrics_by_ip, publish_entry, run_validation_job
from tests.support.router_harness import FedRouter, ServiceProxy, fed_router, services
from tests.support.triton_models import WIDTH, write_model

pytestmark = pytest.mark.triton
Obj = dict[str, Any]
NAME = "m"
INTERVAL, THRESHOLD = 2, 2
ROUTER_IP, R1_IP, R2_IP = "10.99.0.1", "10.1.0.1", "10.2.0.1"


@pytest.fixture(scope="module")
def tritons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TritonProcess]]:
    """good: y = x; rejecting: expects WIDTH-1 values (every client request is a 400);
    wrong: y = 3x where its engine's reference says y = x."""
    root = tmp_path_factory.mktemp("tritons")
    write_model(root / "good", NAME, scale=1.0)
    write_model(root / "rejecting", NAME, width=WIDTH - 1, scale=1.0)
    write_model(root / "wrong", NAME, scale=3.0)
    servers = {name: start_triton(root / name) for name in ("good", "rejecting", "wrong")}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop(10.0)


def canary_spec(sha: str) -> Obj:
    """One replica, canary 50% -> 100% behind the router, analyses every INTERVAL seconds."""
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": sha}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 1},
        "rollout": {
            "strategy": "Canary",
            "traffic": {"mode": "Router"},
            "canary": {
                "steps": [50, 100],
                "analysisIntervalSeconds": INTERVAL,
                "failureThreshold": THRESHOLD,
                "maxErrorRate": 0.05,
            },
        },
    }


@dataclass
class Stage:
    """Everything one test runs against."""

    cluster: Cluster
    store: Path
    settings: Settings
    workdir: Path
    router: FedRouter
    proxies: dict[str, ServiceProxy]
    pods: dict[str, TritonProcess]  # pod IP -> the tritonserver behind it

    async def build(self, sha: str, width: int, scale: float = 1.0) -> str:
        """The build Job of the stored spec finishes with an entry for y = x * scale."""
        key = key_of(self.cluster, NAME, self.settings)
        job = build_job_name(NAME, key)
        await eventually(lambda: self.cluster.get(r.JOBS, job), what=f"build Job of {sha[:6]}")
        publish_entry(self.store, key, width, scale)
        await self.cluster.finish_job(job, summary(key))
        return key

    async def start_pod(self, revision: int, ip: str) -> None:
        """The revision's Deployment gets its pod at `ip`, ready."""
        deployment = revision_name(NAME, revision)
        await eventually(lambda: self.cluster.get(r.DEPLOYMENTS, deployment), what=deployment)
        await self.cluster.add_pod(deployment, ip)
        await self.cluster.ready_deployment(deployment)

    async def validate(self, revision: int) -> str:
        """The revision's validation Job, run for real against its pods."""
        job = validation_job_name(NAME, revision)
        await eventually(lambda: self.cluster.get(r.JOBS, job), what=f"validation Job {job}")
        return await run_validation_job(self.cluster, job, self.pods, self.store, self.workdir)

    def status(self) -> Obj:
        return dict(self.cluster.md(NAME).get("status") or {})

    async def router_runs(self) -> dict[int, int] | None:
        """The weights HAProxy runs, once it runs the table of the stored status; else None."""
        seen = await figures(self.router.figures_url)
        version = (self.status().get("traffic") or {}).get("version")
        if seen.get(("modelops_router_applied_version", "")) != version:
            return None
        return {
            int(revision): int(value)
            for (metric, revision), value in seen.items()
            if metric == "modelops_router_weight"
        }

    async def requests_to(self, revision: int) -> float:
        """Client requests the router sent to a revision so far."""
        return sum(
            value
            for (metric, rev), value in (await figures(self.router.figures_url)).items()
            if metric == "modelops_router_responses_total" and rev == str(revision)
        )


async def _router_pod(cluster: Cluster) -> None:
    router = router_name(NAME)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, router), what="router Deployment")
    await cluster.add_pod(router, ROUTER_IP)
    await cluster.ready_deployment(router)


async def figures(url: str) -> dict[tuple[str, str], float]:
    """(metric, revision) -> value from the agent's /metrics (it runs on this event loop)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            revision = sample.labels.get("revision", "")
            key = (sample.name, revision)
            out[key] = out.get(key, 0.0) + sample.value
    return out


@pytest.fixture
def candidate(request: pytest.FixtureRequest) -> str:
    """Which server revision 2's pod runs (parametrized indirectly by each test)."""
    return str(request.param)


@pytest.fixture
async def stage(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    run_operator: RunOperator,
    tritons: dict[str, TritonProcess],
    tmp_path: Path,
    candidate: str,
) -> AsyncIterator[Stage]:
    """Revision 1 serving on the good server through the router; revision 2's pod runs the
    `candidate` server."""
    port = free_port()
    routed = settings.model_copy(update={"routes_url": f"http://127.0.0.1:{port}"})
    pods = {R1_IP: tritons["good"], R2_IP: tritons[candidate]}
    layout = {
        revision_name(NAME, 1): {"r1": tritons["good"]},
        revision_name(NAME, 2): {"r2": tritons[candidate]},
    }
    feed = f"http://127.0.0.1:{port}/routes/default/{NAME}"
    with services(tmp_path, layout) as proxies:
        async with fed_router(proxies, feed) as router:
            urls = {ip: server.metrics_url for ip, server in pods.items()}
            urls[ROUTER_IP] = router.figures_url
            async with run_operator(
                settings=routed,
                metrics_url=metrics_by_ip(urls),
                metrics_host="127.0.0.1",
                metrics_port=port,
            ):
                stage = Stage(cluster, store, routed, tmp_path, router, proxies, pods)
                await cluster.create_md(NAME, canary_spec("a" * 64))
                await stage.build("a" * 64, WIDTH)
                await stage.start_pod(1, R1_IP)
                await asyncio.gather(_router_pod(cluster), stage.validate(1))
                await eventually(
                    lambda: stage.status().get("revision", {}).get("current") == 1,
                    what="revision 1 serving",
                )
                # Router pods take clients once they run a table that serves (their readiness).
                await eventually(lambda: _runs(stage, {1: 100}), 5, "router runs r1 100%")
                yield stage


async def _runs(stage: Stage, weights: dict[int, int]) -> bool:
    return await stage.router_runs() == weights


def _events(cluster: Cluster, reason: str) -> list[str]:
    return [e.get("message", "") for e in cluster.events(NAME) if e.get("reason") == reason]


@pytest.mark.parametrize("candidate", ["rejecting"], indirect=True)
async def test_a_canary_its_clients_get_400_from_is_rolled_back_on_the_router_figures(
    stage: Stage, tritons: dict[str, TritonProcess]
) -> None:
    clients = ClientMix(
        stage.router.router.http_url, stage.router.router.grpc_url, NAME, short_lived=1
    )
    clients.start()
    try:
        await stage.cluster.update_spec(NAME, {"model": {"source": {"sha256": "b" * 64}}})
        await stage.build("b" * 64, WIDTH)
        await stage.start_pod(2, R2_IP)
        # The failure shows only with clients' requests: the run is reported passed here.
        job = validation_job_name(NAME, 2)
        await eventually(lambda: stage.cluster.get(r.JOBS, job), what="validation Job")
        await stage.cluster.finish_validation(job)
        await eventually(lambda: clients.failures(), 20, "a client request failing on the canary")
        first_failure = min(o.at for o in clients.failures())
        await eventually(lambda: phase(stage.cluster, NAME) == "RolledBack", 30, "RolledBack")
        rolled_back = time.monotonic()
        await eventually(lambda: _runs(stage, {1: 100, 2: 0}), 10, "router at r1 100%")
        routed_back = time.monotonic()
        await asyncio.sleep(1.0)
    finally:
        clients.stop()
    budget = THRESHOLD * INTERVAL + 5
    assert rolled_back - first_failure <= budget
    # Once the router runs weight 0, no client request reaches the canary.
    assert [o for o in clients.failures() if o.at > routed_back] == []
    last_failure = max(o.at for o in clients.failures())
    assert last_failure - first_failure <= budget
    # Triton counts nothing for requests its front end rejects: the figures were the router's.
    rejected = tritons["rejecting"].metrics_url
    assert "nv_inference_request_failure" not in _nonzero(rejected)
    degraded = condition(stage.cluster, NAME, "Degraded")
    assert degraded.get("status") == "True"
    assert "client errorRate" in degraded.get("message", "")
    assert await stage.router_runs() == {1: 100, 2: 0}


def _nonzero(metrics_url: str) -> set[str]:
    import urllib.request

    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.value
    }


@pytest.mark.parametrize("candidate", ["wrong"], indirect=True)
async def test_a_candidate_served_wrongly_is_rolled_back_by_validation_before_any_request(
    stage: Stage,
) -> None:
    clients = ClientMix(
        stage.router.router.http_url, stage.router.router.grpc_url, NAME, short_lived=1
    )
    clients.start()
    try:
        await stage.cluster.update_spec(NAME, {"model": {"source": {"sha256": "c" * 64}}})
        await stage.build("c" * 64, WIDTH)
        await stage.start_pod(2, R2_IP)
        message = await stage.validate(2)
        await eventually(lambda: phase(stage.cluster, NAME) == "RolledBack", 20, "RolledBack")
        await asyncio.sleep(1.0)
    finally:
        clients.stop()
    assert '"ok":false' in message.replace(" ", "")
    assert await stage.requests_to(2) == 0
    assert clients.failures() == []
    assert len(clients.outcomes) > 50
    validation = stage.status().get("validation") or {}
    assert validation, stage.status()
    (rolled_back,) = _events(stage.cluster, "RolledBack")
    assert "serves wrong answers" in rolled_back


@pytest.mark.parametrize("candidate", ["rejecting"], indirect=True)
async def test_an_incompatible_signature_waits_for_the_opt_in_then_cuts_over_at_once(
    stage: Stage,
) -> None:
    clients = ClientMix(
        stage.router.router.http_url, stage.router.router.grpc_url, NAME, short_lived=1
    )
    clients.start()
    try:
        await stage.cluster.update_spec(NAME, {"model": {"source": {"sha256": "d" * 64}}})
        await stage.build("d" * 64, WIDTH - 1)
        await eventually(
            lambda: _events(stage.cluster, "IncompatibleSignature"), 20, "IncompatibleSignature"
        )
        await asyncio.sleep(2 * INTERVAL)
    finally:
        clients.stop()
    (event,) = _events(stage.cluster, "IncompatibleSignature")
    assert f"input 'x': FP32 [{WIDTH}] -> FP32 [{WIDTH - 1}]" in event
    digest = re.search(r'acceptSignature: "([0-9a-f]{12})"', event)
    assert digest is not None, event
    assert clients.failures() == []
    assert await stage.requests_to(2) == 0
    assert await stage.router_runs() == {1: 100}

    await stage.cluster.update_spec(NAME, {"rollout": {"acceptSignature": digest.group(1)}})
    await stage.start_pod(2, R2_IP)
    assert '"ok":true' in (await stage.validate(2)).replace(" ", "")
    await eventually(lambda: _runs(stage, {1: 0, 2: 100}), 20, "cut over to r2")
    shifts = _events(stage.cluster, "TrafficShifted")
    assert not any("50%" in message for message in shifts), shifts


@pytest.mark.parametrize("candidate", ["good"], indirect=True)
async def test_a_serving_only_edit_with_no_client_traffic_is_promoted_on_its_validation(
    stage: Stage,
) -> None:
    edited = time.monotonic()
    delay = {"serving": {"dynamicBatching": {"maxQueueDelayMicroseconds": 500}}}
    await stage.cluster.update_spec(NAME, delay)
    await stage.start_pod(2, R2_IP)
    assert '"ok":true' in (await stage.validate(2)).replace(" ", "")
    steps = 2
    await eventually(
        lambda: stage.status().get("revision", {}).get("current") == 2,
        steps * INTERVAL + 10,
        "revision 2 promoted without client traffic",
    )
    assert time.monotonic() - edited <= steps * INTERVAL + 10
    assert phase(stage.cluster, NAME) == "Ready"
    await eventually(lambda: _runs(stage, {2: 100}), 10, "router at r2 100%")
    assert await stage.requests_to(2) == 0
