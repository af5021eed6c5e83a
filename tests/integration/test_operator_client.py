"""The k8s layer alone: the aiohttp client (retries, typed errors, apply), events, store, health."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kmock
import pytest

from modelops_operator.k8s import resources as r
from modelops_operator.k8s.client import Credentials, KubeClient
from modelops_operator.k8s.errors import ForbiddenError, NotFoundError, UnavailableError
from modelops_operator.k8s.events import EventRecorder
from modelops_operator.k8s.permissions import REQUIRED_RULES, grants, missing
from modelops_operator.k8s.store import EngineStore, FileStore
from modelops_operator.observability import Health, MetricsServer, OperatorMetrics
from tests.support.kubernetes_emulator import Cluster, declare_resources

KEY = "sha256:" + "ab" * 32


def client_for(url: str, tokens: list[str] | None = None) -> KubeClient:
    """A client with tiny backoffs; each (re)authentication takes the next token."""
    issued = iter(tokens or ["t0"])

    async def connect() -> Credentials:
        return Credentials(server=url, headers={"Authorization": f"Bearer {next(issued)}"})

    return KubeClient(connect, retries=3, backoff=0.001, max_backoff=0.01)


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, list[tuple[str, str]], dict[str, Any]]]:
    """An API server that answers from a script: {path: [status, ...]}, then 200."""
    script: dict[str, Any] = {}
    seen: list[tuple[str, str]] = []

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        seen.append((request.method, request.headers.get("Authorization", "")))
        statuses = script.get(request.path) or [200]
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        body = {"kind": "Status", "reason": "Scripted", "message": f"status {status}"}
        if status == 200:
            body = {"metadata": {"name": "x"}, "items": []}
        return aiohttp.web.json_response(body, status=status)

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen, script
    await runner.cleanup()


async def test_retries_transient_errors_then_succeeds(flaky: Any) -> None:
    url, seen, script = flaky
    script[r.PODS.path("ns", "p")] = [503, 429, 200]
    client = client_for(url)
    assert await client.get(r.PODS, "ns", "p") == {"metadata": {"name": "x"}, "items": []}
    assert len(seen) == 3
    await client.close()


async def test_gives_up_with_typed_errors(flaky: Any) -> None:
    url, seen, script = flaky
    script[r.PODS.path("ns", "down")] = [500]
    script[r.PODS.path("ns", "secret")] = [403]
    client = client_for(url)
    with pytest.raises(UnavailableError) as unavailable:
        await client.get(r.PODS, "ns", "down")
    assert unavailable.value.transient
    assert len(seen) == 4, "one try and three retries"
    with pytest.raises(ForbiddenError) as forbidden:
        await client.get(r.PODS, "ns", "secret")
    assert not forbidden.value.transient
    assert forbidden.value.status == 403
    assert len(seen) == 5, "a 403 is not retried"
    await client.close()


async def test_reauthenticates_once_on_401(flaky: Any) -> None:
    url, seen, script = flaky
    script[r.PODS.path("ns", "p")] = [401, 200]
    client = client_for(url, tokens=["old", "new"])
    await client.get(r.PODS, "ns", "p")
    assert [auth for _, auth in seen] == ["Bearer old", "Bearer new"]
    await client.close()


async def test_unreachable_server_is_unavailable() -> None:
    client = client_for("http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(UnavailableError):
        await client.list(r.PODS, "ns")
    await client.close()


@pytest.fixture
async def api() -> AsyncIterator[kmock.KubernetesEmulator]:
    """A bare emulator."""
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator):
        declare_resources(emulator)
        yield emulator


def configmap(name: str, labels: dict[str, str], data: dict[str, str]) -> dict[str, Any]:
    """A ConfigMap manifest."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "data": data,
    }


async def test_apply_create_conflict_patch_and_label_filter(api: kmock.KubernetesEmulator) -> None:
    cluster = Cluster(api)
    client = client_for(str(api.url).rstrip("/"))
    mine = {"app.kubernetes.io/managed-by": "modelops", "modelops.dev/deployment": "a"}
    _, first = await client.apply(configmap("a-r1", mine, {"k": "1"}), "ns")
    _, again = await client.apply(configmap("a-r1", mine, {"k": "1"}), "ns")
    _, changed = await client.apply(configmap("a-r1", mine, {"k": "2"}), "ns")
    assert (first, again, changed) == ("created", "unchanged", "patched")
    assert cluster.get(r.CONFIGMAPS, "a-r1", "ns")["data"] == {"k": "2"}  # type: ignore[index]
    await client.create(r.CONFIGMAPS, "ns", configmap("other", {"x": "y"}, {}))
    # kmock ignores labelSelector: the client filters too.
    assert [c["metadata"]["name"] for c in await client.list(r.CONFIGMAPS, "ns", mine)] == ["a-r1"]
    assert await client.delete(r.CONFIGMAPS, "ns", "a-r1") is True
    assert await client.delete(r.CONFIGMAPS, "ns", "a-r1") is False, "404 is done"
    with pytest.raises(NotFoundError):
        await client.get(r.CONFIGMAPS, "ns", "a-r1")
    assert not missing(client.calls)
    await client.close()


async def test_events_are_aggregated_and_never_fatal(api: kmock.KubernetesEmulator) -> None:
    cluster = Cluster(api)
    client = client_for(str(api.url).rstrip("/"))
    recorder = EventRecorder(client, host="test")
    md = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": "default", "uid": "u1"},
    }
    await recorder.emit(md, "Warning", "BuildFailed", "accuracy gate failed")
    await recorder.emit(md, "Warning", "BuildFailed", "accuracy gate failed")
    await recorder.emit(md, "Normal", "BuildStarted", "building")
    events = cluster.events("m")
    assert [(e["reason"], e["count"]) for e in events] == [("BuildFailed", 2), ("BuildStarted", 1)]
    assert events[0]["involvedObject"]["uid"] == "u1"
    assert events[0]["firstTimestamp"]
    assert events[0]["lastTimestamp"]
    await client.close()
    broken = client_for("http://127.0.0.1:9")
    await EventRecorder(broken).emit(md, "Normal", "X", "y")  # logged, not raised
    await broken.close()


async def test_file_store_accepts_only_complete_verified_entries(tmp_path: Path) -> None:
    from tests.support.engine_store import TEST_MAC_KEY
    from tests.support.operator_flow import publish

    store = EngineStore(FileStore(tmp_path), TEST_MAC_KEY.encode())
    assert await store.entry(KEY) is None
    (tmp_path / KEY.removeprefix("sha256:")).mkdir()
    (tmp_path / KEY.removeprefix("sha256:") / "engine.json").write_text("{not json")
    assert await store.entry(KEY) is None, "a half-written entry is not an entry"
    digest = publish(tmp_path, KEY)
    found = await store.read(KEY)
    assert found.entry is not None
    assert found.entry["key"] == KEY
    assert found.digest == digest
    assert await store.entry("sha256:../../etc") is None


async def test_file_store_refuses_entries_without_the_stores_mac(tmp_path: Path) -> None:
    from tests.support.engine_store import TEST_MAC_KEY
    from tests.support.operator_flow import publish

    digest = publish(tmp_path, KEY, mac_key="another-key-of-a-tenant-0123456789abcdef")
    found = await EngineStore(FileStore(tmp_path), TEST_MAC_KEY.encode()).read(KEY)
    assert found.entry is None
    assert found.digest == digest
    assert found.refusal is not None
    assert "changed after publishing" in found.refusal
    publish(tmp_path, KEY, mac_key=None)
    unsigned = await EngineStore(FileStore(tmp_path), TEST_MAC_KEY.encode()).read(KEY)
    assert unsigned.refusal is not None
    assert "no MAC" in unsigned.refusal


async def test_a_reported_change_is_checked_by_the_operator_itself(tmp_path: Path) -> None:
    from tests.support.engine_store import TEST_MAC_KEY
    from tests.support.operator_flow import publish

    publish(tmp_path, KEY)
    store = EngineStore(FileStore(tmp_path), TEST_MAC_KEY.encode())
    # A pod's word alone never condemns an intact entry (a tenant can make a pod say anything).
    assert await store.check_files(KEY, "EngineTampered: says a pod") is False
    assert (await store.read(KEY)).entry is not None
    model = tmp_path / KEY.removeprefix("sha256:") / "repository" / "model" / "1" / "model.onnx"
    model.write_bytes(b"an engin3")
    store._checked.clear()  # the next report, after the check interval
    assert await store.check_files(KEY, "EngineTampered: says a pod") is True
    refused = await store.read(KEY)
    assert refused.entry is None
    assert refused.refusal is not None
    assert "model.onnx" in refused.refusal


async def test_metrics_and_healthz_endpoints() -> None:
    metrics = OperatorMetrics()
    health = Health(max_reconcile_age=0.0)
    server = MetricsServer(metrics, health.probes())
    await server.start("127.0.0.1", 0)
    metrics.count_event("ns", "m", "RolledBack")
    metrics.count_event("ns", "gone", "RolledBack")
    metrics.forget("ns", "gone")
    base = f"http://127.0.0.1:{server.port}"
    get: Callable[[str], Any] = lambda path: session.get(base + path)  # noqa: E731
    async with aiohttp.ClientSession() as session:
        async with get("/metrics") as resp:
            text = await resp.text()
        labels = 'modeldeployment="m",namespace="ns",reason="RolledBack"'
        assert f"modelops_deployment_events_total{{{labels}}} 1.0" in text
        assert 'modeldeployment="gone"' not in text, "a deleted resource's series go"
        async with get("/healthz") as resp:
            assert resp.status == 200
        health.watch_event()
        health.reconciled()
        health.objects = 1  # resources exist, and the last reconcile is older than allowed
        async with get("/healthz") as resp:
            assert resp.status == 503
            figures = json.loads(await resp.text())
        assert figures["watch_age_seconds"] >= 0
        assert "error" in figures["reconcile_age_seconds"]
    await server.stop()


def test_required_rules_grant_no_secrets_and_no_wildcards() -> None:
    allowed = grants(REQUIRED_RULES)
    assert not any(resource == "secrets" for _, resource, _ in allowed)
    assert not any("*" in part for grant in allowed for part in grant)
    assert ("", "namespaces", "watch") in allowed
    assert ("apiextensions.k8s.io", "customresourcedefinitions", "list") in allowed
