"""Autoscaling end to end: the operator on kmock scales on a REAL Triton's inferences/s.

The serving pod's fake IP maps to a healthy tritonserver on loopback; the test sends gRPC load
to it. A load step must raise the Deployment within two metric intervals (status.lastScale and
a Scaled Event record it); once the load is gone the count comes down only after
scaleDownDelaySeconds of lower recommendations.
"""

from __future__ import annotations

import asyncio
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
from tests.support.operator_flow import RunOperator, build_and_serve
from tests.support.triton_load import Load, ip_router, tritons

pytestmark = pytest.mark.triton
INTERVAL, DELAY = 1.0, 3
TARGET = 20.0  # inferences/s per replica: one sequential client is far above it


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One healthy tritonserver on loopback for the whole module."""
    with tritons(tmp_path_factory.mktemp("tritons"), healthy=0) as running:
        yield running


@pytest.fixture
async def operator(
    run_operator: RunOperator, servers: dict[str, Any], settings: Settings
) -> AsyncIterator[Operator]:
    """The operator with a 1 s metrics interval, every pod scraped on the healthy server."""
    fast = settings.model_copy(update={"metrics_interval_seconds": INTERVAL})
    url = ip_router({}, servers["healthy"])
    async with run_operator(settings=fast, metrics_url=url) as op:
        yield op


def scaled_spec() -> dict[str, Any]:
    """One to four replicas on inferencesPerSecond, a short scale-down delay."""
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": "a" * 64}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 1},
        "scaling": {
            "minReplicas": 1,
            "maxReplicas": 4,
            "metric": "inferencesPerSecond",
            "target": TARGET,
            "scaleDownDelaySeconds": DELAY,
        },
        "rollout": {"strategy": "Recreate", "traffic": {"mode": "Replicas"}},
    }


def replicas(cluster: Cluster) -> int:
    """spec.replicas of revision 1."""
    dep = cluster.get(r.DEPLOYMENTS, revision_name("auto", 1))
    assert dep is not None
    return int(dep["spec"]["replicas"])


async def test_load_step_scales_up_then_down_after_the_delay(
    cluster: Cluster,
    operator: Operator,
    store: Path,
    settings: Settings,
    servers: dict[str, Any],
) -> None:
    await cluster.create_md("auto", scaled_spec())
    await build_and_serve(cluster, store, settings, "auto", ip="10.3.0.1")
    # status.metrics appears once the pod has a baseline and one interval: idle, no change.
    await eventually(lambda: cluster.md("auto")["status"].get("metrics"), 5, "status.metrics")
    assert replicas(cluster) == 1
    assert "lastScale" not in cluster.md("auto")["status"]

    with Load(servers["healthy"].grpc_url, max_seconds=20) as load:
        await eventually(lambda: replicas(cluster) > 1, 2 * INTERVAL + 1, "a scale-up")
        assert load.first_at is not None
        assert time.monotonic() - load.first_at <= 2 * INTERVAL + 1
        await eventually(lambda: replicas(cluster) == 4, 3 * INTERVAL + 1, "maxReplicas")
        stopped_at = time.monotonic()
    # The status patch follows the Deployment's.
    await eventually(lambda: cluster.md("auto")["status"]["replicas"] == 4, what="status")
    status = cluster.md("auto")["status"]
    last = status["lastScale"]
    assert last["to"] > last["from"] >= 1
    assert "inferencesPerSecond" in last["reason"]
    assert "> target" in last["reason"]
    assert status["metrics"]["inferencesPerSecond"] > TARGET
    await eventually(
        lambda: any(e["reason"] == "Scaled" for e in cluster.events("auto")), what="Scaled"
    )

    # Load gone: the lower recommendation must hold for scaleDownDelaySeconds first.
    await asyncio.sleep(DELAY - 2 * INTERVAL)
    assert replicas(cluster) == 4, "scaled down before scaleDownDelaySeconds"
    await eventually(lambda: replicas(cluster) == 1, DELAY + 3 * INTERVAL, "a scale-down")
    lowered_after = time.monotonic() - stopped_at
    # The last high recommendation may come from the interval that ended as the load stopped.
    assert lowered_after >= DELAY - INTERVAL
    await eventually(lambda: cluster.md("auto")["status"]["lastScale"]["to"] == 1, what="status")
    last = cluster.md("auto")["status"]["lastScale"]
    assert last["from"] == 4
    assert f"for {DELAY}s" in last["reason"]


async def test_status_metrics_are_kept_current_without_scaling(
    cluster: Cluster,
    operator: Operator,
    store: Path,
    settings: Settings,
    servers: dict[str, Any],
) -> None:
    # The QPS printer column reads status.metrics: it must not need spec.scaling.
    spec = scaled_spec()
    del spec["scaling"]
    await cluster.create_md("plain", spec)
    await build_and_serve(cluster, store, settings, "plain", ip="10.4.0.1")
    with Load(servers["healthy"].grpc_url, max_seconds=10):
        await eventually(
            lambda: (
                (cluster.md("plain")["status"].get("metrics") or {}).get("inferencesPerSecond", 0)
                > 0
            ),
            4 * INTERVAL + 2,
            "status.metrics with traffic",
        )
    status = cluster.md("plain")["status"]
    assert "lastScale" not in status
    dep = cluster.get(r.DEPLOYMENTS, revision_name("plain", 1))
    assert dep is not None
    assert dep["spec"]["replicas"] == 1
