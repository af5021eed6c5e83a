"""The whole operator (kopf + handlers + k8s layer + decide) against kmock's API server.

The test plays the cluster's controllers: it finishes build Jobs (with the builder's termination
message), publishes store entries, and marks Deployments ready. Assertions are on the requests
the API server saw (exactly one create of each child), not only on the final objects.
"""

from __future__ import annotations

import json
from pathlib import Path

from modelops_operator.api import ModelDeployment
from modelops_operator.decide.build import desired_key
from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.k8s.permissions import missing
from modelops_operator.render.names import (
    build_job_name,
    revision_name,
    service_name,
    source_job_name,
)
from modelops_operator.settings import Settings
from tests.support.kubernetes_emulator import Cluster, eventually, rbac_call
from tests.support.operator_flow import (
    Obj,
    RunOperator,
    build_and_serve,
    condition,
    finish_build,
    finish_source,
    key_of,
    phase,
    publish,
    serve_revision,
    spec,
)


async def test_create_build_rollout_ready(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("resnet", spec(replicas=2))
    key = await build_and_serve(cluster, store, settings, "resnet")

    assert cluster.get(r.CONFIGMAPS, revision_name("resnet", 1)) is not None
    assert cluster.get(r.SERVICES, service_name("resnet")) is not None
    status = cluster.md("resnet")["status"]
    assert status["engine"]["key"] == key
    assert status["revision"]["current"] == 1
    assert status["observedGeneration"] == 1
    assert condition(cluster, "resnet", "Ready")["status"] == "True"
    # Exactly one create of each child, whatever the number of events and reconciles.
    assert cluster.created("jobs") == [
        source_job_name("resnet", key),
        build_job_name("default", "resnet", key),
        "resnet-validate-r1",
    ]
    for plural in ("deployments", "configmaps", "services"):
        assert cluster.posts(plural) == 1, plural
    assert cluster.events("resnet"), "the operator posts its own Events"
    # Every call the operator and kopf made is granted by REQUIRED_RULES (the chart's RBAC).
    assert not missing(cluster.calls()), missing(cluster.calls())
    assert not missing(operator.client.calls)
    sample = operator.metrics.registry.get_sample_value
    assert sample("modelops_builds_total", {"event": "started"}) == 1
    assert sample("modelops_rollouts_total") == 1
    # The gauge follows the status patch in the operator's own thread: wait for it.
    labels = {"namespace": "default", "modeldeployment": "resnet", "phase": "Ready"}
    await eventually(lambda: sample("modelops_deployment_phase", labels), what="the phase gauge")


def watch_requests(cluster: Cluster, plural: str) -> list[dict[str, str]]:
    """Query parameters of the operator's (kopf's) LISTs and WATCHes of one resource."""
    found = []
    for request in cluster.requests():
        call = rbac_call(request)
        if call is not None and call[1:] in ((plural, "list"), (plural, "watch")):
            found.append({"verb": call[2], **{k: str(v) for k, v in request.params.items()}})
    return found


async def test_production_watch_mode_lists_then_watches_from_the_list(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("wm", spec())
    await build_and_serve(cluster, store, settings, "wm")
    seen = watch_requests(cluster, "modeldeployments")
    assert seen[0]["verb"] == "list"
    watches = [s for s in seen if s["verb"] == "watch"]
    assert watches, seen
    assert all(w.get("resourceVersion", "").isdigit() for w in watches), watches
    assert not any("sendInitialEvents" in w for w in watches)


async def test_streaming_watch_mode_serves_too(
    cluster: Cluster, run_operator: RunOperator, store: Path, settings: Settings
) -> None:
    # Kubernetes 1.34's streaming lists (kopf's initial_streaming): no LIST at all.
    async with run_operator(initial_streaming=True):
        await cluster.create_md("st", spec())
        await build_and_serve(cluster, store, settings, "st")
    seen = watch_requests(cluster, "modeldeployments")
    assert seen, "kopf watched ModelDeployments"
    assert all(s["verb"] == "watch" and s.get("sendInitialEvents") == "true" for s in seen)
    assert phase(cluster, "st") == "Ready"


async def test_serving_change_rolls_out_without_build(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("svc", spec())
    await build_and_serve(cluster, store, settings, "svc")

    await cluster.update_spec(
        "svc", {"serving": {"dynamicBatching": {"maxQueueDelayMicroseconds": 500}}}
    )
    await serve_revision(cluster, "svc", 2, ip="10.9.0.2")
    await eventually(lambda: phase(cluster, "svc") == "Ready", what="Ready again")
    assert cluster.posts("jobs", "default-svc-") == 1, "a serving-only change never rebuilds"
    assert cluster.posts("deployments") == 2
    assert cluster.md("svc")["status"]["observedGeneration"] == 2


async def test_model_change_builds_again(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("mc", spec())
    first = await build_and_serve(cluster, store, settings, "mc")

    await cluster.update_spec("mc", {"model": {"source": {"sha256": "b" * 64}}})
    second = key_of(cluster, "mc", settings)
    assert second != first
    await finish_source(cluster, settings, "mc")
    build_ns = settings.operator_namespace
    job = build_job_name("default", "mc", second)
    await eventually(lambda: cluster.get(r.JOBS, job, build_ns), what="new Job")
    await eventually(lambda: phase(cluster, "mc") == "Building", what="Building")
    assert cluster.posts("jobs", "default-mc-") == 2


async def test_build_failure_first_revision_is_failed(
    cluster: Cluster, operator: Operator, settings: Settings
) -> None:
    await cluster.create_md("bad", spec())
    await finish_build(cluster, Path("/nonexistent"), settings, "bad", ok=False)

    await eventually(lambda: phase(cluster, "bad") == "Failed", what="Failed")
    built = condition(cluster, "bad", "EngineBuilt")
    assert built["status"] == "False"
    assert built["reason"] == "AccuracyGateFailed"
    assert "atol" in built["message"]
    assert cluster.names(r.DEPLOYMENTS) == [], "a failed build rolls nothing out"
    # The Event is posted beside the status write, not before it: wait for it too.
    await eventually(
        lambda: any(e["type"] == "Warning" for e in cluster.events("bad")), what="Warning Event"
    )


async def test_build_failure_with_older_revision_is_degraded(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("deg", spec())
    await build_and_serve(cluster, store, settings, "deg")

    await cluster.update_spec("deg", {"model": {"source": {"sha256": "c" * 64}}})
    await finish_build(cluster, store, settings, "deg", ok=False)

    await eventually(lambda: phase(cluster, "deg") == "Degraded", what="Degraded")
    assert condition(cluster, "deg", "Degraded")["status"] == "True"
    assert "AccuracyGateFailed" in json.dumps(cluster.md("deg")["status"]["conditions"])
    assert cluster.get(r.DEPLOYMENTS, revision_name("deg", 1)) is not None, "r1 keeps serving"


async def test_invalid_spec_fails_with_reason(cluster: Cluster, operator: Operator) -> None:
    await cluster.create_md("inv", {"model": {"source": {"uri": "https://x/m.onnx"}}})
    await eventually(lambda: phase(cluster, "inv") == "Failed", what="Failed")
    ready = condition(cluster, "inv", "Ready")
    assert ready["status"] == "False"
    assert "sha256" in ready["message"]
    assert cluster.posts("jobs") == 0


async def test_store_hit_deploys_without_build(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    probe = {"metadata": {"name": "hit"}, "spec": spec()}
    publish(store, desired_key(ModelDeployment.from_body(probe).spec, settings))
    await cluster.create_md("hit", spec())
    job = await finish_source(cluster, settings, "hit")  # proves access, builds nothing
    await serve_revision(cluster, "hit", 1)
    await eventually(lambda: phase(cluster, "hit") == "Ready", what="Ready")
    assert cluster.created("jobs") == [job, "hit-validate-r1"]


async def test_delete_leaves_no_build_job_behind(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("gone", spec())
    await build_and_serve(cluster, store, settings, "gone")
    assert not cluster.md("gone")["metadata"].get("finalizers")
    assert cluster.names(r.JOBS, settings.operator_namespace), "the build Job ran there"

    await cluster.delete_md("gone")
    await eventually(lambda: cluster.get(r.MODELDEPLOYMENTS, "gone") is None, what="MD gone")
    # No ownerReference reaches the operator's namespace: the operator deletes it itself.
    await eventually(
        lambda: cluster.names(r.JOBS, settings.operator_namespace) == [], what="build Job gone"
    )
    assert ("default", "gone") not in operator.objects


async def test_restart_mid_rollout_converges_without_duplicates(
    cluster: Cluster, run_operator: RunOperator, store: Path, settings: Settings
) -> None:
    async with run_operator():
        await cluster.create_md("rs", spec())
        key = await finish_build(cluster, store, settings, "rs")
        await eventually(lambda: cluster.get(r.DEPLOYMENTS, revision_name("rs", 1)), what="r1")
        await eventually(lambda: phase(cluster, "rs") == "RollingOut", what="RollingOut")

    # Stopped mid-rollout; a new process resumes from the status and the children alone.
    async with run_operator() as second:
        await eventually(lambda: second.reconciles > 0, what="a reconcile after restart")
        await serve_revision(cluster, "rs", 1)
        await eventually(lambda: phase(cluster, "rs") == "Ready", what="Ready after restart")

    assert cluster.created("jobs") == [
        source_job_name("rs", key),
        build_job_name("default", "rs", key),
        "rs-validate-r1",
    ]
    for plural in ("deployments", "configmaps", "services"):
        assert cluster.posts(plural) == 1, plural


async def test_scale_subresource_replicas_scale_the_deployment(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings, crd: Obj
) -> None:
    # `kubectl scale md/NAME --replicas=3` writes the scale subresource's specReplicasPath.
    scale = crd["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.serving.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    await cluster.create_md("sc", spec(replicas=1))
    await build_and_serve(cluster, store, settings, "sc")

    path = r.MODELDEPLOYMENTS.path("default", "sc", "scale")
    scaled = await cluster._send("PATCH", path, {"spec": {"replicas": 3}})
    assert (scaled["kind"], scaled["spec"]["replicas"]) == ("Scale", 3)
    assert cluster.md("sc")["spec"]["serving"]["replicas"] == 3
    rev = revision_name("sc", 1)
    await eventually(
        lambda: (cluster.get(r.DEPLOYMENTS, rev) or {})["spec"]["replicas"] == 3, what="3"
    )
    await eventually(lambda: cluster.md("sc")["status"]["replicas"] == 3, what="status 3")
    # What an HPA or `kubectl scale` reads back through /scale: replicas and the pods' selector.
    read = await cluster._send("GET", path)
    assert read["status"] == {
        "replicas": 3,
        "selector": "modelops.dev/deployment=sc,app.kubernetes.io/name=triton",
    }
    # The API server counted the write through /scale as a spec change.
    assert cluster.md("sc")["metadata"]["generation"] == 2
    await eventually(lambda: cluster.md("sc")["status"]["observedGeneration"] == 2, what="gen 2")
    assert cluster.posts("deployments") == 1, "a replica change is no new revision"
    await cluster.ready_deployment(rev)
    await eventually(lambda: cluster.md("sc")["status"].get("readyReplicas") == 3, what="ready 3")
    assert phase(cluster, "sc") == "Ready"
