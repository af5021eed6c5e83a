"""The emulator the operator tests run against (tests/support/apiserver.py) answers as a real
API server does where the operator depends on it; each test fails with stock kmock's answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from modelops_operator.k8s import resources as r
from tests.support.apiserver import FaithfulEmulator
from tests.support.apiserver_rules import selector_matches
from tests.support.kubernetes_emulator import TEST_AGENT, Cluster, eventually
from tests.support.operator_flow import spec

Obj = dict[str, Any]


async def call(api: FaithfulEmulator, method: str, path: str, body: Any = None) -> tuple[int, Obj]:
    """One request: (HTTP status, JSON body)."""
    headers = {"User-Agent": TEST_AGENT, "Content-Type": "application/merge-patch+json"}
    resp = await api.request(method, path, json=body, headers=headers)
    async with resp:
        data = await resp.json(content_type=None)
        return resp.status, data if isinstance(data, dict) else {}


def deployment(name: str = "d", replicas: int = 1) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


async def test_generation_counts_spec_changes_only(api: FaithfulEmulator, cluster: Cluster) -> None:
    created = await cluster.create_md("g", spec())
    assert created["metadata"]["generation"] == 1
    path = r.MODELDEPLOYMENTS.path("default", "g")
    await call(api, "PATCH", path, {"metadata": {"labels": {"team": "a"}}})
    await cluster.patch_status(r.MODELDEPLOYMENTS, "g", {"phase": "Ready"})
    assert cluster.md("g")["metadata"]["generation"] == 1, "metadata and status are no spec"
    await cluster.update_spec("g", {"serving": {"replicas": 2}})
    assert cluster.md("g")["metadata"]["generation"] == 2
    # The same spec again changes nothing: no generation, no resourceVersion.
    version = cluster.md("g")["metadata"]["resourceVersion"]
    await cluster.update_spec("g", {"serving": {"replicas": 2}})
    assert cluster.md("g")["metadata"]["resourceVersion"] == version
    assert cluster.md("g")["metadata"]["generation"] == 2
    # Built-in kinds too.
    await call(api, "POST", r.DEPLOYMENTS.path("default"), deployment())
    dep = r.DEPLOYMENTS.path("default", "d")
    await call(api, "PATCH", dep, {"spec": {"replicas": 3}})
    _, stored = await call(api, "GET", dep)
    assert stored["metadata"]["generation"] == 2


async def test_the_status_subresource_is_enforced_both_ways(
    api: FaithfulEmulator, cluster: Cluster
) -> None:
    body = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": spec(),
        "status": {"phase": "Ready"},
    }
    await call(api, "POST", r.MODELDEPLOYMENTS.path("default"), body)
    assert cluster.md("s")["status"] == {}, "a create's status is dropped"
    path = r.MODELDEPLOYMENTS.path("default", "s")
    # Status written through the object is dropped (the operator must use /status) ...
    await call(api, "PATCH", path, {"status": {"phase": "Ready"}})
    assert cluster.md("s")["status"] == {}
    # ... and spec written through /status is dropped.
    status, _ = await call(
        api,
        "PATCH",
        r.MODELDEPLOYMENTS.path("default", "s", "status"),
        {"spec": {"serving": {"replicas": 5}}, "status": {"phase": "Ready"}},
    )
    assert status == 200
    assert cluster.md("s")["status"] == {"phase": "Ready"}
    assert cluster.md("s")["spec"]["serving"]["replicas"] == 1
    # Built-in kinds: a Deployment's status only through /status.
    await call(api, "POST", r.DEPLOYMENTS.path("default"), deployment())
    await call(api, "PATCH", r.DEPLOYMENTS.path("default", "d"), {"status": {"replicas": 9}})
    _, stored = await call(api, "GET", r.DEPLOYMENTS.path("default", "d"))
    assert stored["status"] == {}
    # A kind without the subresource has no /status.
    await call(api, "POST", r.CONFIGMAPS.path("default"), {"metadata": {"name": "c"}})
    status, _ = await call(api, "PATCH", r.CONFIGMAPS.path("default", "c", "status"), {})
    assert status == 404


async def test_immutable_fields_are_refused_and_defaults_filled_in(api: FaithfulEmulator) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "default"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}
            }
        },
    }
    _, created = await call(api, "POST", r.JOBS.path("default"), job)
    assert created["spec"]["backoffLimit"] == 6
    uid = created["metadata"]["uid"]
    assert created["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": uid}
    }
    assert created["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    changed = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "y"}]}}}}
    status, body = await call(api, "PATCH", r.JOBS.path("default", "j"), changed)
    assert status == 422, body
    assert "spec.template" in body["message"]

    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": {"selector": {"app": "a"}, "ports": [{"name": "http", "port": 8000}]},
    }
    _, created = await call(api, "POST", r.SERVICES.path("default"), service)
    ip = created["spec"]["clusterIP"]
    assert ip.startswith("10.96.")
    assert created["spec"]["ports"][0] == {
        "name": "http",
        "port": 8000,
        "protocol": "TCP",
        "targetPort": 8000,
    }
    path = r.SERVICES.path("default", "s")
    status, _ = await call(api, "PATCH", path, {"spec": {"clusterIP": "10.0.0.1"}})
    assert status == 422
    status, kept = await call(
        api, "PATCH", path, {"spec": {"clusterIP": None, "type": "ClusterIP"}}
    )
    assert (status, kept["spec"]["clusterIP"]) == (200, ip), "an omitted clusterIP is kept"

    await call(api, "POST", r.DEPLOYMENTS.path("default"), deployment())
    moved = {"spec": {"selector": {"matchLabels": {"app": "other"}}}}
    status, _ = await call(api, "PATCH", r.DEPLOYMENTS.path("default", "d"), moved)
    assert status == 422


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1,b=2", {"a": "1", "b": "3"}, False),
        ("a!=1", {"a": "2"}, True),
        ("a!=1", {}, True),
        ("a in (1, 2)", {"a": "2"}, True),
        ("a in (1,2),b", {"a": "2"}, False),
        ("a notin (1,2)", {"a": "3"}, True),
        ("a notin (1,2)", {"a": "1"}, False),
        ("!a", {"b": "1"}, True),
        ("!a", {"a": "1"}, False),
        ("a", {"a": ""}, True),
    ],
)
def test_set_based_label_selectors(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert selector_matches(selector, labels) is matches


async def test_lists_filter_by_set_based_selectors(api: FaithfulEmulator) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", None)):
        labels = {"tier": tier} if tier else {}
        body = {"metadata": {"name": name, "namespace": "default", "labels": labels}}
        await call(api, "POST", r.CONFIGMAPS.path("default"), body)
    path = r.CONFIGMAPS.path("default")
    for selector, names in (("tier in (web,db)", ["a", "b"]), ("!tier", ["c"])):
        _, listed = await call(api, "GET", f"{path}?labelSelector={selector}")
        assert sorted(i["metadata"]["name"] for i in listed["items"]) == names
    status, _ = await call(api, "GET", f"{path}?labelSelector=tier in web")
    assert status == 400


async def test_preconditions_are_checked_under_the_write_lock(
    api: FaithfulEmulator, cluster: Cluster
) -> None:
    created = await cluster.create_md("p", spec())
    version = created["metadata"]["resourceVersion"]
    path = r.MODELDEPLOYMENTS.path("default", "p")

    def patch(value: str) -> Any:
        body = {"metadata": {"resourceVersion": version, "labels": {"writer": value}}}
        return call(api, "PATCH", path, body)

    # Two writers that read the same version: whatever the interleaving, only one wins.
    async with api._lock:
        first = asyncio.create_task(patch("one"))
        second = asyncio.create_task(patch("two"))
        await asyncio.sleep(0.2)
    results = sorted(status for status, _ in await asyncio.gather(first, second))
    assert results == [200, 409]


@contextlib.asynccontextmanager
async def watching(api: FaithfulEmulator, query: str) -> AsyncIterator[asyncio.Queue[Obj]]:
    """A WATCH of ModelDeployments; its events in a queue."""
    events: asyncio.Queue[Obj] = asyncio.Queue()
    url = f"{str(api.url).rstrip('/')}{r.MODELDEPLOYMENTS.path('default')}?watch=true&{query}"

    async def read() -> None:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            async for line in resp.content:
                if line.strip():
                    await events.put(json.loads(line))

    task = asyncio.create_task(read())
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_event(events: asyncio.Queue[Obj]) -> Obj:
    return await asyncio.wait_for(events.get(), 5)


async def test_watch_continues_from_a_list_and_misses_nothing(
    api: FaithfulEmulator, cluster: Cluster
) -> None:
    await cluster.create_md("w1", spec())
    _, listed = await call(api, "GET", r.MODELDEPLOYMENTS.path("default"))
    version = listed["metadata"]["resourceVersion"]
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]
    # Written after the LIST, before the WATCH: a continuation replays it.
    await cluster.create_md("w2", spec())
    async with watching(api, f"resourceVersion={version}") as events:
        event = await next_event(events)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "w2")
        await cluster.update_spec("w1", {"serving": {"replicas": 2}})
        event = await next_event(events)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "w1")
    # A restarted server keeps no history: an old version is 410 Gone (the client lists again).
    await api.end_watches()
    async with watching(api, f"resourceVersion={version}") as events:
        event = await next_event(events)
        assert (event["type"], event["object"]["code"]) == ("ERROR", 410)


async def test_a_watch_subscribes_before_its_snapshot(
    api: FaithfulEmulator, cluster: Cluster
) -> None:
    await cluster.create_md("s1", spec())

    def waiting() -> int:
        return len(api._lock._waiters or ())

    # The WATCH waits for the lock to take its snapshot; a write is queued right behind it.
    await api._lock.acquire()
    async with watching(api, "sendInitialEvents=true") as events:
        await eventually(lambda: waiting() == 1, what="the WATCH waiting for its snapshot")
        write = asyncio.create_task(cluster.update_spec("s1", {"serving": {"replicas": 2}}))
        await eventually(lambda: waiting() == 2, what="the write waiting behind it")
        api._lock.release()
        seen = [await next_event(events) for _ in range(3)]
        await write
    assert [e["type"] for e in seen] == ["ADDED", "BOOKMARK", "MODIFIED"]
    assert seen[0]["object"]["spec"]["serving"]["replicas"] == 1
    assert seen[2]["object"]["spec"]["serving"]["replicas"] == 2
