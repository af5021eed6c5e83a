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
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_builder.triton_local import TritonProcess, start_triton
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import validation_job_name
from modelops_operator.settings import Settings
from tests.support.client_mix import ClientMix
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import RunOperator, condition, phase
from tests.support.routed_cluster import (
    INTERVAL,
    NAME,
    R1_IP,
    R2_IP,
    THRESHOLD,
    Stage,
    runs,
    serving_stage,
)
from tests.support.triton_models import WIDTH, write_model

pytestmark = pytest.mark.triton


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
    pods = {R1_IP: tritons["good"], R2_IP: tritons[candidate]}
    async with serving_stage(cluster, store, settings, tmp_path, pods, run_operator) as running:
        yield running


def _events(cluster: Cluster, reason: str) -> list[str]:
    return [e.get("message", "") for e in cluster.events(NAME) if e.get("reason") == reason]


@pytest.mark.parametrize("candidate", ["rejecting"], indirect=True)
async def test_a_canary_its_clients_get_400_from_is_rolled_back_on_the_router_figures(
    stage: Stage, tritons: dict[str, TritonProcess]
) -> None:
    clients = ClientMix(*stage.client_urls, NAME, short_lived=1)
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
        await eventually(lambda: runs(stage, {1: 100, 2: 0}), 10, "router at r1 100%")
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
    # The newest table: revision 2 at 0, or already dropped once its pods are gone.
    newest = await eventually(stage.router_runs, 10, "the router runs the newest table")
    assert newest in ({1: 100, 2: 0}, {1: 100})


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
    clients = ClientMix(*stage.client_urls, NAME, short_lived=1)
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
    clients = ClientMix(*stage.client_urls, NAME, short_lived=1)
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
    await eventually(lambda: runs(stage, {1: 0, 2: 100}), 20, "cut over to r2")
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
    # Ready once the router pods run the table that sends revision 2 every request.
    await eventually(lambda: phase(stage.cluster, NAME) == "Ready", 10, "Ready")
    await eventually(lambda: runs(stage, {2: 100}), 10, "router at r2 100%")
    assert await stage.requests_to(2) == 0
