"""Finding 10 of issue 23: the store's keys survive any renderer. The chart renders no keys; the
operator pod's init container creates the Secret once and never changes it, so `helm template |
kubectl apply` (or an Argo CD sync) done twice keeps every token, receipt and entry valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_cli.store_keys import store_keys
from modelops_operator.k8s.client import Credentials
from tests.support.chart import CHART, Helm, Manifest
from tests.support.chart_cluster import (
    BY_KIND,
    SECRETS,
    create,
    create_namespace,
    declare_chart_resources,
    run_store_keys_init,
)
from tests.support.kubernetes_emulator import Cluster

REPO = Path(__file__).resolve().parents[2]
NAMESPACE, RELEASE = "modelops-system", "modelops"


@pytest.fixture
def helm() -> Helm:
    binary = REPO / ".tools" / "bin" / "helm"
    assert binary.exists(), "helm not found: run `bash hack/install-helm.sh`"
    return Helm(binary)


def _template(helm: Helm, *sets: str) -> list[Manifest]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for value in ("watchNamespaces={ml}", *sets):
        args += ["--set", value]
    result = Helm(helm.binary).run(*args)  # a fresh render each time (Helm caches per args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] != "ServiceMonitor"]


async def _apply(cluster: Cluster, docs: list[Manifest]) -> None:
    """`kubectl apply -f -`: create each object, or merge its rendered fields into the stored
    one (a rendered Secret's `data` replaces the stored keys, as kubectl's apply does)."""
    for doc in sorted(docs, key=lambda d: {"Namespace": 0, "Secret": 1}.get(d["kind"], 9)):
        res = BY_KIND[(doc["apiVersion"], doc["kind"])]
        ns = (doc["metadata"].get("namespace") or NAMESPACE) if res.namespaced else None
        if res.kind == "Namespace":
            if doc["metadata"]["name"] not in cluster.namespaces:
                await create_namespace(cluster, doc["metadata"]["name"])
        elif cluster.get(res, doc["metadata"]["name"], ns) is None:  # type: ignore[arg-type]
            await create(cluster, doc, ns)
        else:
            await cluster._send("PATCH", res.path(ns, doc["metadata"]["name"]), doc)


def _operator(docs: list[Manifest]) -> Manifest:
    return next(
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["spec"]["template"]["spec"]["containers"][0]["name"] == "operator"
    )


async def test_finding_10_store_keys_survive_helm_template_applied_twice(
    api: Any, cluster: Cluster, helm: Helm
) -> None:
    declare_chart_resources(api)
    await create_namespace(cluster, NAMESPACE)
    keys = []
    for _ in range(2):  # two syncs: each renders the chart afresh and applies it
        docs = _template(helm)
        assert not [d for d in docs if d["kind"] == "Secret"], "the template renders no keys"
        await _apply(cluster, docs)
        secret = await run_store_keys_init(cluster, _operator(docs), NAMESPACE)
        assert secret is not None
        keys.append(secret["data"])
    assert keys[0] == keys[1]
    assert set(keys[0]) == {"mac", "transfer"}
    assert keys[0]["mac"] != keys[0]["transfer"]
    # neither Helm nor Argo CD tracks it: no release label, so no prune and no uninstall
    labels = cluster.get(SECRETS, f"{RELEASE}-store-key", NAMESPACE)["metadata"]["labels"]
    assert "app.kubernetes.io/instance" not in labels
    assert "app.kubernetes.io/managed-by" not in labels


async def test_finding_10_an_existing_secret_is_used_and_never_touched(
    api: Any, cluster: Cluster, helm: Helm
) -> None:
    declare_chart_resources(api)
    await create_namespace(cluster, NAMESPACE)
    mine = {"mac": "bWluZQ==", "transfer": "dGhlaXJz"}
    await create(
        cluster,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "own-keys"}, "data": mine},
        NAMESPACE,
    )
    docs = _template(helm, "store.keySecret.name=own-keys")
    assert "initContainers" not in _operator(docs)["spec"]["template"]["spec"]
    await _apply(cluster, docs)
    # the init container of a default install finds a Secret and keeps it as it is
    credentials = Credentials(server=str(api.url).rstrip("/"))
    assert await store_keys(credentials, NAMESPACE, "own-keys") == 0
    assert cluster.get(SECRETS, "own-keys", NAMESPACE)["data"] == mine
