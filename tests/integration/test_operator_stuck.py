"""Stuck pods through the whole operator (kopf + kmock): a build pod that waits for a claim, a
source pod that cannot be scheduled, a Triton pod whose image cannot be pulled. Each becomes a
condition and a PodStuck Event carrying the scheduler's or kubelet's words within one reconcile
interval (pods of Jobs wake nobody up: the interval is what bounds it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import build_job_name, revision_name, source_job_name
from modelops_operator.settings import Settings
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import (
    RunOperator,
    build_and_serve,
    condition,
    finish_source,
    key_of,
    spec,
)

INTERVAL = 1.5
MISSING_CLAIM = '0/3 nodes are available: persistentvolumeclaim "modelops-engines" not found.'
NO_NODE = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
PULL = 'Back-off pulling image "nvcr.io/nvidia/tritonserver:26.10-py3"'


@pytest.fixture
async def operator(run_operator: RunOperator, settings: Settings) -> Any:
    """The operator with a short safety-net interval: the bound on noticing a stuck pod."""
    fast = settings.model_copy(update={"reconcile_interval_seconds": INTERVAL})
    async with run_operator(settings=fast) as op:
        yield op


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def job_pod(cluster: Cluster, job: str, namespace: str, status: dict[str, Any]) -> None:
    """A pod the Job controller made for `job`, in the state given: the template's labels plus
    the controller's, and the Job as its controller."""
    owner = cluster.get(r.JOBS, job, namespace)
    assert owner is not None
    template = owner["spec"]["template"]["metadata"].get("labels") or {}
    reference = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job,
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job}-x7k2p",
            "namespace": namespace,
            "labels": {**template, "batch.kubernetes.io/job-name": job, "job-name": job},
            "ownerReferences": [reference],
            "creationTimestamp": now(),
        },
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    await cluster._send("POST", r.PODS.path(namespace), body)
    # The kubelet's and scheduler's words go through the status subresource.
    await cluster.patch_status(r.PODS, f"{job}-x7k2p", status, namespace)


def pending(message: str) -> dict[str, Any]:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": now(),
    }
    return {"phase": "Pending", "conditions": [scheduled]}


def warnings(cluster: Cluster, name: str) -> list[str]:
    return [e["message"] for e in cluster.events(name) if e["reason"] == "PodStuck"]


async def test_a_build_pod_waiting_for_a_missing_claim_says_so(
    cluster: Cluster, operator: Operator, settings: Settings
) -> None:
    await cluster.create_md("claim", spec())
    await finish_source(cluster, settings, "claim")
    key = key_of(cluster, "claim", settings)
    job = build_job_name("default", "claim", key)
    build_ns = settings.operator_namespace
    await eventually(lambda: cluster.get(r.JOBS, job, build_ns), what="build Job")
    await job_pod(cluster, job, build_ns, pending(MISSING_CLAIM))
    found = await eventually(
        lambda: condition(cluster, "claim", "EngineBuilt").get("reason") == "Unschedulable",
        within=2 * INTERVAL + 3,
        what="EngineBuilt Unschedulable",
    )
    assert found
    message = condition(cluster, "claim", "EngineBuilt")["message"]
    assert 'persistentvolumeclaim "modelops-engines" not found' in message
    assert job in message
    await eventually(lambda: warnings(cluster, "claim"), 5, "a PodStuck Event")
    assert any("modelops-engines" in m for m in warnings(cluster, "claim"))


async def test_an_unschedulable_source_pod_says_so(
    cluster: Cluster, operator: Operator, settings: Settings
) -> None:
    await cluster.create_md("sched", spec())
    job = source_job_name("sched", key_of(cluster, "sched", settings))
    await eventually(lambda: cluster.get(r.JOBS, job), what="source Job")
    await job_pod(cluster, job, "default", pending(NO_NODE))
    await eventually(
        lambda: condition(cluster, "sched", "EngineBuilt").get("reason") == "Unschedulable",
        within=2 * INTERVAL + 3,
        what="EngineBuilt Unschedulable",
    )
    assert (
        "didn't match Pod's node affinity" in condition(cluster, "sched", "EngineBuilt")["message"]
    )
    assert (cluster.md("sched").get("status") or {}).get("phase") == "Building"


async def test_a_triton_pod_that_cannot_pull_its_image_says_so(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("pull", spec())
    await build_and_serve(cluster, store, settings, "pull")
    await cluster.update_spec("pull", {"serving": {"instancesPerReplica": 2}})
    r2 = revision_name("pull", 2)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, r2), what="revision 2")
    pod = await cluster.add_pod(r2, "10.250.2.1", ready=False)
    pod["status"]["containerStatuses"] = [
        {
            "name": "triton",
            "ready": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": PULL}},
        }
    ]
    await cluster.patch_status(r.PODS, pod["metadata"]["name"], pod["status"])
    await eventually(
        lambda: condition(cluster, "pull", "RolledOut").get("reason") == "ImagePullBackOff",
        within=2 * INTERVAL + 3,
        what="RolledOut ImagePullBackOff",
    )
    assert PULL in condition(cluster, "pull", "Ready")["message"]
    await eventually(lambda: warnings(cluster, "pull"), 5, "a PodStuck Event")
    assert PULL in warnings(cluster, "pull")[0]
    assert (cluster.md("pull").get("status") or {}).get("revision", {}).get("current") == 1
