"""The watch-fed caches against a faithful emulator: no LIST per reconcile, creates, updates and
deletes seen through the watches, a watch restart (410 Gone, re-list), a child deleted behind
the operator's back recreated exactly once, a stale resourceVersion retried without losing a
field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name, service_name, source_job_name
from modelops_operator.settings import Settings
from tests.support.apiserver import FaithfulEmulator
from tests.support.kubernetes_emulator import Cluster, eventually, rbac_call
from tests.support.operator_flow import (
    RunOperator,
    build_and_serve,
    in_operator,
    key_of,
    phase,
    spec,
)


def operator_lists(cluster: Cluster) -> list[tuple[str, str, str]]:
    """LIST requests the operator itself (not kopf's watches) sent."""
    found = []
    for q in cluster.requests():
        call = rbac_call(q)
        if call is not None and call[2] == "list" and "modelops-operator" in str(q.headers):
            found.append(call)
    return found


def cached(op: Operator, res: r.Resource, name: str) -> dict[str, Any] | None:
    """The operator's cached copy of a child."""
    return op.cache.kind(res).get("default", name)


async def test_reconciles_read_the_cache_not_the_api(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("c", spec())
    await build_and_serve(cluster, store, settings, "c")
    assert operator.reconciles > 0
    assert operator_lists(cluster) == [], "no LIST in any reconcile"
    assert not any(c[2] == "get" for c in operator.client.calls if c[1] != "leases")
    # Safety-net passes of a converged object write nothing.
    await eventually(lambda: operator.scheduler.in_flight == 0, what="quiet")
    writes = sum(n for c, n in operator.client.calls.items() if c[1] != "leases")
    before = operator.reconciles
    for _ in range(3):
        await in_operator(operator, operator.reconcile("default", "c"))
    assert operator.reconciles >= before + 3
    assert sum(n for c, n in operator.client.calls.items() if c[1] != "leases") == writes


async def test_cache_follows_creates_updates_deletes_and_a_watch_restart(
    cluster: Cluster, api: FaithfulEmulator, operator: Operator, settings: Settings
) -> None:
    await cluster.create_md("w", spec())
    job = source_job_name("w", key_of(cluster, "w", settings))
    await eventually(lambda: cached(operator, r.JOBS, job), what="create seen")
    await cluster.patch_status(r.JOBS, job, {"active": 1})
    await eventually(
        lambda: (cached(operator, r.JOBS, job) or {}).get("status", {}).get("active") == 1,
        what="update seen",
    )
    # The API server restarts: streams end, and changes happen while nobody watches.
    api.hold_watches()
    starts = api.watch_starts
    await api.end_watches()
    await cluster.patch_status(r.JOBS, job, {"active": 0, "failed": 0, "ready": 1})
    other = {"apiVersion": "v1", "kind": "ConfigMap", "data": {}}
    other["metadata"] = {
        "name": "w-extra",
        "namespace": "default",
        "labels": {"app.kubernetes.io/managed-by": "modelops", "modelops.dev/deployment": "w"},
        "ownerReferences": [{"uid": cluster.md("w")["metadata"]["uid"], "controller": True}],
    }
    await cluster._send("POST", r.CONFIGMAPS.path("default"), other)
    api.release_watches()
    # Continuations are told 410 Gone; kopf lists again and the cache has the gap's changes.
    await eventually(lambda: api.watch_starts > starts, what="watches back")
    await eventually(lambda: cached(operator, r.CONFIGMAPS, "w-extra"), what="create in gap")
    await eventually(
        lambda: (cached(operator, r.JOBS, job) or {}).get("status", {}).get("ready") == 1,
        what="update in gap",
    )
    # Deletions after the restart are seen again.
    await cluster._send("DELETE", r.CONFIGMAPS.path("default", "w-extra"))
    await eventually(lambda: cached(operator, r.CONFIGMAPS, "w-extra") is None, what="delete")
    assert operator_lists(cluster) == []


async def test_child_deleted_behind_the_back_is_recreated_exactly_once(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("d", spec())
    await build_and_serve(cluster, store, settings, "d")
    svc = service_name("d")
    old_uid = cluster.get(r.SERVICES, svc)["metadata"]["uid"]  # type: ignore[index]
    await cluster._send("DELETE", r.SERVICES.path("default", svc))
    await eventually(lambda: cluster.get(r.SERVICES, svc), what="Service recreated")
    await eventually(
        lambda: (
            (cached(operator, r.SERVICES, svc) or {}).get("metadata", {}).get("uid")
            not in (None, old_uid)
        ),
        what="the new one cached",
    )
    # More events and safety-net passes: still exactly two creates in all.
    await cluster.ready_deployment(revision_name("d", 1))
    for _ in range(3):
        await in_operator(operator, operator.reconcile("default", "d"))
    assert cluster.created("services") == [svc, svc]
    assert phase(cluster, "d") == "Ready"


async def test_stale_resource_version_is_read_again_and_keeps_foreign_fields(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("s", spec(replicas=1))
    await build_and_serve(cluster, store, settings, "s")
    rev = revision_name("s", 1)
    # Someone else labels the Deployment; the operator's cache is made stale on purpose (as if
    # the watch event were still in flight) by putting the older copy back.
    stale = dict(cached(operator, r.DEPLOYMENTS, rev) or {})
    patch = {"metadata": {"labels": {"team.example.com/owner": "ml"}}}
    await cluster._send("PATCH", r.DEPLOYMENTS.path("default", rev), patch)
    await eventually(
        lambda: (
            "team.example.com/owner"
            in (cached(operator, r.DEPLOYMENTS, rev) or {}).get("metadata", {}).get("labels", {})
        ),
        what="foreign label cached",
    )
    kind = operator.cache.kind(r.DEPLOYMENTS)
    kind.objects[("default", rev)] = stale  # older resourceVersion, no foreign label
    await cluster.update_spec("s", {"serving": {"replicas": 3}})
    await eventually(
        lambda: (cluster.get(r.DEPLOYMENTS, rev) or {})["spec"]["replicas"] == 3, what="3"
    )
    stored = cluster.get(r.DEPLOYMENTS, rev)
    assert stored is not None
    assert stored["metadata"]["labels"]["team.example.com/owner"] == "ml", "no field lost"
    # The write carried the stale resourceVersion: refused (409), read again (the one GET),
    # merged again and written with the current version.
    assert operator.client.calls[("apps", "deployments", "get")] == 1
    assert cluster.posts("deployments") == 1


async def test_without_the_gateway_api_the_caches_still_sync(
    api: FaithfulEmulator, run_operator: RunOperator, settings: Settings
) -> None:
    """Most clusters have no HTTPRoute/GRPCRoute CRDs: their caches must not hold startup."""
    for res in (r.HTTPROUTES, r.GRPCROUTES):
        del api.resources[f"{res.group}/{res.version}/{res.plural}"]
    resp = await api.get("/apis/gateway.networking.k8s.io/v1")
    async with resp:
        found = await resp.json(content_type=None) if resp.status == 200 else {}
    assert not (found or {}).get("resources"), "the Gateway API is not served"
    cluster = Cluster(api)
    async with run_operator():
        await cluster.create_md("nogw", spec())
        job = source_job_name("nogw", key_of(cluster, "nogw", settings))
        await eventually(lambda: cluster.get(r.JOBS, job), what="source Job")


async def test_a_delete_decided_on_a_stale_cache_spares_a_newer_object(
    api: FaithfulEmulator, cluster: Cluster
) -> None:
    """The Applier deletes with the cached uid as precondition: another object of the same name,
    made since, is not the one decided on and stays."""
    from modelops_operator.decide.inputs import Observed
    from modelops_operator.decide.plan import Delete, Plan
    from modelops_operator.k8s.apply import Applier
    from modelops_operator.k8s.cache import ChildCache
    from modelops_operator.k8s.client import Credentials, KubeClient
    from modelops_operator.k8s.events import EventRecorder

    async def connect() -> Credentials:
        return Credentials(server=str(api.url).rstrip("/"))

    client = KubeClient(connect)
    cache = ChildCache([r.CONFIGMAPS])
    applier = Applier(client, EventRecorder(client), cache)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "ns"}}
    cache.observed(r.CONFIGMAPS, await client.create(r.CONFIGMAPS, "ns", body))
    # Behind the cache's back: deleted and made again (a new uid).
    await cluster._send("DELETE", r.CONFIGMAPS.path("ns", "x"))
    newer = await cluster._send("POST", r.CONFIGMAPS.path("ns"), body)
    md = {"metadata": {"name": "m", "namespace": "ns"}}
    plan = Plan(actions=(Delete("v1", "ConfigMap", "x"),), status={})
    done = await applier.apply(md, Observed(), plan)
    assert done.deleted == []
    stored = cluster.get(r.CONFIGMAPS, "x", "ns")
    assert stored is not None
    assert stored["metadata"]["uid"] == newer["metadata"]["uid"]
    # With the cache up to date, the same decision deletes it.
    cache.observed(r.CONFIGMAPS, newer)
    done = await applier.apply(md, Observed(), plan)
    assert done.deleted == ["ConfigMap/x"]
    assert cluster.get(r.CONFIGMAPS, "x", "ns") is None
    await client.close()


async def test_a_pass_while_the_first_job_runs_writes_nothing(
    cluster: Cluster, operator: Operator, settings: Settings
) -> None:
    """The message that creates a Job is the one that waits for it: a thousand ModelDeployments
    waiting for their Jobs cost no status write per safety-net pass."""
    await cluster.create_md("idle", spec())
    job = source_job_name("idle", key_of(cluster, "idle", settings))
    await eventually(lambda: cluster.get(r.JOBS, job), what="source Job")
    await eventually(lambda: operator.scheduler.in_flight == 0, what="quiet")
    writes = sum(n for c, n in operator.client.calls.items() if c[1] != "leases")
    for _ in range(2):
        await in_operator(operator, operator.reconcile("default", "idle"))
    assert sum(n for c, n in operator.client.calls.items() if c[1] != "leases") == writes
