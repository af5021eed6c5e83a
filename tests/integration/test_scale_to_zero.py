"""Scale to zero, the whole cycle: idle -> 0 pods -> a request -> Ready -> served.

The operator on kmock, the real router (HAProxy with its hold action, the agent fed by the
route feed) and a real tritonserver started for each pod by the stand-in kubelet: the first
HTTP and gRPC requests after idle are held while the pod starts and then served; a request held
past coldStartTimeoutSeconds gets 503 / UNAVAILABLE saying the model is waking up, and an Event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name
from modelops_operator.settings import Settings
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import RunOperator, condition
from tests.support.routed_cluster import NAME
from tests.support.router_harness import grpc_answers, http_answers
from tests.support.triton_models import write_model
from tests.support.zero_stage import ZeroStage, zero_stage

pytestmark = pytest.mark.triton

IDLE_SECONDS = 2


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The revision's model: y = x."""
    root = tmp_path_factory.mktemp("zero-model")
    write_model(root, NAME, scale=1.0)
    return root


def _replicas(stage: ZeroStage) -> int:
    dep = stage.cluster.get(r.DEPLOYMENTS, revision_name(NAME, 1)) or {}
    return int(dep.get("spec", {}).get("replicas", -1))


async def _router_ready(stage: ZeroStage) -> bool:
    url = stage.router.figures_url.replace("/metrics", "/ready")
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status == 200


async def _asleep(stage: ZeroStage) -> None:
    await eventually(lambda: stage.phase() == "Idle", IDLE_SECONDS + 15, "phase Idle")
    await eventually(lambda: stage.kubelet.server is None, 15, "the pod stopped")
    await eventually(lambda: stage.status().get("ready") == "0/0", 10, "READY 0/0")


async def test_an_idle_model_scales_to_zero_and_held_requests_wake_it(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    run_operator: RunOperator,
    tmp_path: Path,
    model_root: Path,
) -> None:
    fast = settings.model_copy(update={"metrics_interval_seconds": 1.0})
    async with zero_stage(
        cluster, store, fast, tmp_path, model_root, run_operator, idle_seconds=IDLE_SECONDS
    ) as stage:
        http, grpc = stage.router.router.http_url, stage.router.router.grpc_url
        assert await asyncio.to_thread(http_answers, http, 5, False) == [1.0] * 5
        await eventually(lambda: stage.status().get("metrics"), 10, "status.metrics")

        # idle -> zero: 0 pods, phase Idle, READY 0/0, the last figures kept
        await _asleep(stage)
        status = stage.status()
        assert (status["ready"], status["replicas"], _replicas(stage)) == ("0/0", 0, 0)
        assert status["metrics"] is not None
        assert condition(cluster, NAME, "ScaledToZero")["status"] == "True"
        assert condition(cluster, NAME, "Ready")["status"] == "True"
        assert stage.events("ScaledToZero")
        assert stage.kubelet.starts == 1
        assert await _router_ready(stage), "the router keeps taking clients at zero"

        # the first requests, a keep-alive HTTP client and a gRPC channel, are held and served
        served = await asyncio.gather(
            asyncio.to_thread(http_answers, http, 3, True),
            asyncio.to_thread(grpc_answers, grpc, 3),
        )
        assert served == [[1.0] * 3, [1.0] * 3]
        assert stage.kubelet.starts == 2
        woke = await eventually(lambda: stage.events("WokeUp"), 30, "a WokeUp Event")
        assert "answered after" in woke[0]
        await eventually(lambda: stage.phase() == "Ready", 30, "phase Ready")
        # The status patch that records it follows the WokeUp Event (events go first).
        cold_start = await eventually(
            lambda: (stage.status().get("idle") or {}).get("coldStartSeconds"), 10, "coldStart"
        )
        assert 0 < cold_start < 60
        scaled = condition(cluster, NAME, "ScaledToZero")
        assert (scaled["status"], scaled["reason"]) == ("False", "WokeUp")

        # asleep again; this time the pod does not start: held requests time out, clearly
        await _asleep(stage)
        await cluster.update_spec(NAME, {"scaling": {"coldStartTimeoutSeconds": 2}})
        await eventually(
            lambda: (stage.status().get("traffic") or {}).get("holdSeconds") == 2, 10, "hold 2 s"
        )
        await asyncio.sleep(1.5)  # the router runs the table with the shorter hold
        stage.kubelet.stuck = True
        refused = await asyncio.gather(
            asyncio.to_thread(http_answers, http, 1, False),
            asyncio.to_thread(grpc_answers, grpc, 1),
        )
        http_error, grpc_error = refused[0][0], refused[1][0]
        assert "503" in http_error, http_error
        assert "waking up" in http_error, http_error
        assert "UNAVAILABLE" in grpc_error, grpc_error
        assert "waking up" in grpc_error, grpc_error
        timed_out = await eventually(lambda: stage.events("ColdStartTimedOut"), 10, "the Event")
        assert "coldStartTimeoutSeconds (2 s)" in timed_out[0]

        # the pod starts after all: held requests are served again, nothing else was lost
        stage.kubelet.stuck = False
        await cluster.update_spec(NAME, {"scaling": {"coldStartTimeoutSeconds": 60}})
        await eventually(
            lambda: (stage.status().get("traffic") or {}).get("holdSeconds") == 60, 10, "hold 60"
        )
        await asyncio.sleep(1.5)
        served = await asyncio.gather(
            asyncio.to_thread(http_answers, http, 2, False),
            asyncio.to_thread(grpc_answers, grpc, 2),
        )
        assert served == [[1.0, 1.0], [1.0, 1.0]]
