"""Canary analysis end to end: the operator on kmock scrapes REAL Triton servers.

Two tritonservers run on loopback (one healthy model, one failing every 4th request). Pods in
kmock get fake IPs that the operator's `metrics_url` maps to those servers; the test drives
gRPC load at the server behind the canary's pod. A failing canary is rolled back after
failureThreshold analyses; a healthy one is promoted step by step by the analyses alone.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name
from modelops_operator.settings import Settings
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import (
    RunOperator,
    build_and_serve,
    condition,
    finish_build,
    phase,
    validate_revision,
)
from tests.support.triton_load import FAIL_EVERY, Load, ip_router, tritons

pytestmark = pytest.mark.triton
Obj = dict[str, Any]
FAULTY_PREFIX = "10.9."
INTERVAL, THRESHOLD = 1, 2


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A healthy and a faulty tritonserver on loopback for the whole module."""
    with tritons(tmp_path_factory.mktemp("tritons"), healthy=0, faulty=FAIL_EVERY) as running:
        yield running


@pytest.fixture
async def operator(run_operator: RunOperator, servers: dict[str, Any]) -> AsyncIterator[Operator]:
    """The operator, scraping pods 10.9.* on the faulty server and all others on the healthy."""
    url = ip_router({FAULTY_PREFIX: servers["faulty"]}, servers["healthy"])
    async with run_operator(metrics_url=url) as op:
        yield op


def canary_spec() -> Obj:
    """Two replicas, canary 50% -> 100%, analyses every second, two in a row decide."""
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": "a" * 64}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 2},
        "rollout": {
            # Judged on the canary pods' own Triton counters (test_router_rollout: the router's).
            "traffic": {"mode": "Replicas"},
            "strategy": "Canary",
            "canary": {
                "steps": [50, 100],
                "analysisIntervalSeconds": INTERVAL,
                "failureThreshold": THRESHOLD,
                "maxErrorRate": 0.01,
            },
        },
    }


def replicas(cluster: Cluster, name: str) -> int:
    """spec.replicas of a Deployment."""
    dep = cluster.get(r.DEPLOYMENTS, name)
    assert dep is not None, name
    return int(dep["spec"]["replicas"])


async def start_canary(cluster: Cluster, store: Path, settings: Settings, name: str) -> str:
    """Serve r1 (two healthy pods), change the model, finish the build: r2 is the canary."""
    await cluster.create_md(name, canary_spec())
    await build_and_serve(cluster, store, settings, name, ip="10.1.0.1")
    await cluster.add_pod(revision_name(name, 1), "10.1.0.2", index=1)
    await cluster.update_spec(name, {"model": {"source": {"sha256": "b" * 64}}})
    await finish_build(cluster, store, settings, name)
    r2 = revision_name(name, 2)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, r2), what="canary Deployment")
    assert replicas(cluster, r2) == 1, "step 1 (50% of 2) runs one canary pod"
    return r2


async def test_failing_canary_is_rolled_back_on_its_metrics(
    cluster: Cluster,
    operator: Operator,
    store: Path,
    settings: Settings,
    servers: dict[str, Any],
) -> None:
    r2 = await start_canary(cluster, store, settings, "bad")
    await validate_revision(cluster, "bad", 2, ip=f"{FAULTY_PREFIX}0.1")
    with Load(servers["faulty"].grpc_url, max_seconds=20) as load:
        await eventually(lambda: phase(cluster, "bad") == "RolledBack", 15, "RolledBack")
        rolled_back_at = time.monotonic()
    assert load.failed > 0
    assert load.first_failure_at is not None
    # failureThreshold analyses after a baseline, plus a reconcile: well within the target.
    assert rolled_back_at - load.first_failure_at < THRESHOLD * INTERVAL + 5

    degraded = condition(cluster, "bad", "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "AnalysisFailed")
    # One request in four fails; the interval's edges can shift the count by a request.
    assert re.search(r"errorRate 0\.2[0-9]* > maxErrorRate 0\.01", degraded["message"])
    assert "BACKEND" in degraded["message"], "the figures name Triton's failure reason"
    status = cluster.md("bad")["status"]
    assert status["revision"]["current"] == 1
    assert status["revision"].get("candidate") is None
    entry = next(h for h in status["history"] if h["revision"] == 2)
    assert entry["state"] == "RolledBack"
    assert entry["reason"].startswith("AnalysisFailed")
    assert replicas(cluster, revision_name("bad", 1)) == 2, "the old revision serves all"
    assert replicas(cluster, r2) == 0
    # The Events follow the status write (k8s/apply.py): wait for them, do not race them.
    events = await eventually(
        lambda: [e for e in cluster.events("bad") if e["reason"] == "RolledBack"],
        5,
        "a RolledBack Event",
    )
    assert events[0]["type"] == "Warning"
    assert "errorRate" in events[0]["message"]
    # The same generation is not retried: the next analyses change nothing.
    await asyncio.sleep(2 * INTERVAL)
    assert phase(cluster, "bad") == "RolledBack"
    assert cluster.posts("deployments") == 2


async def test_healthy_canary_is_promoted_by_its_analyses(
    cluster: Cluster,
    operator: Operator,
    store: Path,
    settings: Settings,
    servers: dict[str, Any],
) -> None:
    r2 = await start_canary(cluster, store, settings, "good")
    await validate_revision(cluster, "good", 2, ip="10.2.0.1")
    with Load(servers["healthy"].grpc_url, max_seconds=30):
        await eventually(lambda: replicas(cluster, r2) == 2, 10, "step 2 (100%)")
        await eventually(
            lambda: any(e["reason"] == "StepPromoted" for e in cluster.events("good")),
            what="a StepPromoted Event",
        )
        await cluster.ready_deployment(r2)
        await cluster.add_pod(r2, "10.2.0.2", index=1)
        await eventually(lambda: phase(cluster, "good") == "Ready", 15, "Ready")
    status = cluster.md("good")["status"]
    assert status["revision"] == {"current": 2, "previous": 1}
    assert replicas(cluster, revision_name("good", 1)) == 0
    assert replicas(cluster, r2) == 2
    assert condition(cluster, "good", "Degraded")["status"] == "False"
    reasons = [e["reason"] for e in cluster.events("good")]
    assert "RolledOut" in reasons
    assert "RolledBack" not in reasons
