"""Deleting a ModelDeployment never waits for the operator (issue 17).

The operator adds no finalizer; children go by Kubernetes' garbage collector (their controller
ownerReference). kmock has no collector: `collect_garbage` plays it, as the tests play the Job
and Deployment controllers. Objects of earlier versions lose their finalizers on the next
reconcile, including those already being deleted.
"""

from __future__ import annotations

from pathlib import Path

from modelops_operator.decide.finalizers import LEGACY_ANNOTATIONS, LEGACY_FINALIZERS
from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.settings import Settings
from tests.support.apiserver import collect_garbage
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import RunOperator, build_and_serve, phase, spec

FOREIGN = "example.com/keep-me"
CHILDREN = (r.JOBS, r.DEPLOYMENTS, r.CONFIGMAPS, r.SERVICES)


def finalizers(cluster: Cluster, name: str) -> list[str] | None:
    """metadata.finalizers of a stored ModelDeployment (None when it is gone)."""
    obj = cluster.get(r.MODELDEPLOYMENTS, name)
    return None if obj is None else list(obj["metadata"].get("finalizers") or [])


async def test_no_finalizer_and_children_go_by_garbage_collection(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("gone", spec())
    await build_and_serve(cluster, store, settings, "gone")
    assert finalizers(cluster, "gone") == [], "neither the operator nor kopf adds a finalizer"
    uid = cluster.md("gone")["metadata"]["uid"]
    for res in CHILDREN:
        for name in cluster.names(res):
            refs = cluster.get(res, name)["metadata"]["ownerReferences"]  # type: ignore[index]
            assert [(x["uid"], x["controller"]) for x in refs] == [(uid, True)], name

    plurals = [res.plural for res in CHILDREN]
    present = {res.plural for res in CHILDREN if cluster.names(res)}
    creates = {p: cluster.posts(p) for p in plurals}
    build_namespace = settings.operator_namespace
    assert cluster.names(r.JOBS, build_namespace), "its build Job, beyond any ownerReference"

    await cluster.delete_md("gone")
    assert cluster.get(r.MODELDEPLOYMENTS, "gone") is None, "deleted at once, no handler needed"
    await eventually(lambda: ("default", "gone") not in operator.objects, what="forgotten")
    collected = await collect_garbage(cluster.api)
    assert present <= {c.split("/")[0] for c in collected}
    # The build Job is the operator's to delete, without a finalizer: on the deletion's event.
    await eventually(lambda: cluster.names(r.JOBS, build_namespace) == [], what="build Job gone")
    for res in CHILDREN:
        assert cluster.names(res) == [], res.plural
    # The children's DELETED events reach the operator; it recreates nothing of a gone owner.
    await eventually(
        lambda: not any(operator.cache.kind(res).objects for res in CHILDREN), what="cache empty"
    )
    await eventually(lambda: operator.scheduler.in_flight == 0, what="triggers done")
    assert {p: cluster.posts(p) for p in plurals} == creates


async def test_legacy_finalizers_go_and_delete_then_needs_no_operator(
    cluster: Cluster, run_operator: RunOperator
) -> None:
    legacy = {
        "finalizers": [*LEGACY_FINALIZERS, FOREIGN],
        "annotations": {LEGACY_ANNOTATIONS[0]: '{"spec": {}}'},
    }
    await cluster.create_md("old", spec(), **legacy)
    await cluster.create_md("plain", spec(), finalizers=list(LEGACY_FINALIZERS))
    # Deleted while no operator ran: held by the earlier version's finalizer.
    await cluster.create_md("doomed", spec(), finalizers=[LEGACY_FINALIZERS[0]])
    await cluster.delete_md("doomed")
    assert cluster.md("doomed")["metadata"].get("deletionTimestamp")

    async with run_operator():
        await eventually(lambda: finalizers(cluster, "old") == [FOREIGN], what="legacy gone")
        await eventually(lambda: finalizers(cluster, "plain") == [], what="plain released")
        await eventually(lambda: finalizers(cluster, "doomed") is None, what="doomed deleted")
        await eventually(lambda: phase(cluster, "plain") == "Building", what="reconciled")
    annotations = cluster.md("old")["metadata"].get("annotations") or {}
    assert LEGACY_ANNOTATIONS[0] not in annotations
    assert cluster.md("old")["metadata"]["finalizers"] == [FOREIGN], "a foreign one stays"

    # The operator is stopped: deleting needs nobody.
    await cluster.delete_md("plain")
    assert cluster.get(r.MODELDEPLOYMENTS, "plain") is None


def build_job(namespace: str, name: str, owner: tuple[str, str, str]) -> dict[str, object]:
    """A build Job as the operator makes it in its namespace (owner by label and annotations)."""
    labels = {
        "app.kubernetes.io/managed-by": "modelops",
        "app.kubernetes.io/component": "build",
        "modelops.dev/deployment": owner[1],
        "modelops.dev/owner-namespace": owner[0],
    }
    annotations = {"modelops.dev/owner-name": owner[1], "modelops.dev/owner-uid": owner[2]}
    meta = {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}}


async def test_the_sweep_deletes_build_jobs_whose_owner_is_gone_and_only_those(
    cluster: Cluster, operator: Operator, settings: Settings
) -> None:
    """Deletions the operator missed (it was down, or a standby) are found in its caches."""
    from modelops_operator.handlers.build_jobs import sweep
    from tests.support.operator_flow import in_operator

    await cluster.create_md("alive", spec())
    uid = cluster.md("alive")["metadata"]["uid"]
    # The operator made no build Job for an object it never saw: wait until it has seen it.
    await eventually(lambda: operator.latest(("default", "alive")), what="alive seen")
    build_namespace = settings.operator_namespace
    jobs = {
        "kept": ("default", "alive", uid),
        "old-object": ("default", "alive", "a-deleted-uid"),  # same name, another object
        "gone": ("default", "deleted-while-down", "uid-x"),
    }
    for job, owner in jobs.items():
        await cluster._send(
            "POST", r.JOBS.path(build_namespace), build_job(build_namespace, job, owner)
        )
    await eventually(
        lambda: all(operator.cache.kind(r.JOBS).get(build_namespace, j) for j in jobs),
        what="cached",
    )
    deleted = await in_operator(operator, sweep(operator))
    assert sorted(deleted) == ["Job/gone", "Job/old-object"]
    assert "kept" in cluster.names(r.JOBS, build_namespace)
    assert not {"gone", "old-object"} & set(cluster.names(r.JOBS, build_namespace))
