"""`modelops doctor` against the chart installed into kmock: a healthy install passes every
check; each way an install goes wrong is named, with its fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from modelops_cli.doctor import Doctor, diagnose, render
from modelops_cli.doctor_checks import Finding
from modelops_cli.doctor_cni import cni_finding
from modelops_operator.k8s import resources as r
from modelops_operator.k8s.client import Credentials, KubeClient
from tests.support.chart import Helm
from tests.support.chart_cluster import (
    PVCS,
    Installed,
    create,
    declare_chart_resources,
    helm_install,
    install_network_plugin,
    serve_daemonsets,
)
from tests.support.kubernetes_emulator import Cluster
from tests.support.rbac_review import ROLES, serve_access_reviews, serve_namespaces

REPO = Path(__file__).resolve().parents[2]
RELEASE, SYSTEM = "modelops", "modelops-system"
ML = {"kubernetes.io/metadata.name": "ml"}


@pytest.fixture
def helm() -> Helm:
    binary = REPO / ".tools" / "bin" / "helm"
    if not binary.exists():
        pytest.skip("helm not found: run `bash hack/install-helm.sh`")
    return Helm(binary)


async def healthy(api: Any, cluster: Cluster, helm: Helm, *sets: str) -> Installed:
    """The chart installed, its engine server running and its claim bound."""
    declare_chart_resources(api)
    installed = await helm_install(helm, cluster, RELEASE, SYSTEM, "watchNamespaces={ml}", *sets)
    serve_access_reviews(api, cluster)
    serve_namespaces(api, cluster)
    await cluster.ready_deployment(f"{RELEASE}-store", SYSTEM)
    await cluster._send(
        "PATCH", PVCS.path(SYSTEM, "modelops-engines"), {"status": {"phase": "Bound"}}
    )
    return installed


async def doctor(api: Any) -> list[Finding]:
    return await diagnose(Credentials(server=str(api.url).rstrip("/")), RELEASE, SYSTEM)


def failures(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {(f.check, f.where): f for f in findings if f.level == "fail"}


async def test_a_healthy_install_passes_every_check(api: Any, cluster: Cluster, helm: Helm) -> None:
    await healthy(api, cluster, helm)
    findings = await doctor(api)
    assert failures(findings) == {}
    checks = {(f.check, f.where) for f in findings}
    assert {
        ("CRD", "modeldeployments.modelops.dev"),
        ("namespace", "ml"),
        ("RBAC", "ml"),
        ("RBAC", SYSTEM),
        ("RBAC", "cluster"),
        ("engine server", f"{RELEASE}-store"),
        ("store", "modelops-engines"),
        ("store key", f"{RELEASE}-store-key"),
        ("store reachable", "ml"),
    } <= checks
    versions = {f.where: f.level for f in findings if f.check == "image version"}
    assert versions == {"operator": "ok", "builder": "ok"}
    console = Console(record=True, width=200)
    assert render(findings, RELEASE, SYSTEM, console) == 0
    assert "every check passed" in console.export_text()


async def test_a_missing_role_is_named_with_its_fix(api: Any, cluster: Cluster, helm: Helm) -> None:
    await healthy(api, cluster, helm)
    await cluster._send("DELETE", ROLES.path("ml", f"{RELEASE}-operator"))
    found = failures(await doctor(api))
    rbac = found[("RBAC", "ml")]
    assert "may not" in rbac.detail
    assert "create jobs.batch" in rbac.detail
    assert "watchNamespaces" in rbac.fix
    assert ("RBAC", SYSTEM) not in found


async def test_a_stale_crd_a_missing_namespace_and_a_stopped_server(
    api: Any, cluster: Cluster, helm: Helm
) -> None:
    await healthy(api, cluster, helm)
    crd = cluster.get(r.CRDS, "modeldeployments.modelops.dev", None)
    assert crd is not None
    versions = crd["spec"]["versions"]
    versions[0]["schema"]["openAPIV3Schema"]["properties"].pop("status")
    await cluster._send(
        "PATCH",
        r.CRDS.path(None, "modeldeployments.modelops.dev"),
        {"spec": {"versions": versions}},
    )
    cluster.namespaces.pop("ml")
    await cluster.patch_status(r.DEPLOYMENTS, f"{RELEASE}-store", {"availableReplicas": 0}, SYSTEM)
    found = failures(await doctor(api))
    assert "schema of v1alpha1 differs" in found[("CRD", "modeldeployments.modelops.dev")].detail
    assert found[("namespace", "ml")].fix.startswith("kubectl create namespace ml")
    assert "no replica available" in found[("engine server", f"{RELEASE}-store")].detail


async def test_a_network_policy_that_keeps_tenants_from_the_store(
    api: Any, cluster: Cluster, helm: Helm
) -> None:
    # The chart's own policies admit the watched namespace's pods (a healthy install passes):
    # without them, a hand-written policy decides alone.
    await healthy(api, cluster, helm, "networkPolicy.enabled=false")
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "only-monitoring"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]}],
        },
    }
    await create(cluster, deny, SYSTEM)
    found = failures(await doctor(api))
    reach = found[("store reachable", "ml")]
    assert "the engine server's namespace refuses them" in reach.detail
    assert "allow TCP" in reach.fix
    # Letting the tenant namespace in makes it pass again.
    opened = {
        **deny,
        "metadata": {"name": "tenants"},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "ml"}
                            }
                        }
                    ],
                    "ports": [{"port": 8080}],
                }
            ],
        },
    }
    await create(cluster, opened, SYSTEM)
    assert ("store reachable", "ml") not in failures(await doctor(api))


async def test_an_image_that_cannot_be_pulled_is_reported_with_the_kubelets_words(
    api: Any, cluster: Cluster, helm: Helm
) -> None:
    installed = await healthy(api, cluster, helm)
    # Someone edited the Deployment by hand (the chart's schema refuses such a reference).
    operator = installed.operator_deployment()
    pod = operator["spec"]["template"]["spec"]
    for item in pod["containers"][0]["env"]:
        if item["name"] == "MODELOPS_TRITON_IMAGE":
            item["value"] = "nvcr.io/nvidia/tritonserver:26.10 py3"
    name = operator["metadata"]["name"]
    await cluster._send("PATCH", r.DEPLOYMENTS.path(SYSTEM, name), {"spec": operator["spec"]})
    failing = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "resnet-r1-abc",
            "labels": {"app.kubernetes.io/managed-by": "modelops"},
        },
        "spec": {"containers": [{"name": "triton", "image": "x"}]},
        "status": {
            "containerStatuses": [
                {
                    "name": "triton",
                    "image": "nvcr.io/nvidia/tritonserver:26.99-py3",
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "nvcr.io/nvidia/tritonserver:26.99"',
                        }
                    },
                }
            ]
        },
    }
    await create(cluster, failing, "ml")
    found = failures(await doctor(api))
    assert "is not an image reference" in found[("image", "triton")].detail
    pulled = found[("image", "ml/resnet-r1-abc")]
    assert "ImagePullBackOff: Back-off pulling image" in pulled.detail
    console = Console(record=True, width=200)
    assert render(await doctor(api), RELEASE, SYSTEM, console) == 1
    assert "fix:" in console.export_text()


async def test_an_operator_image_the_cluster_cannot_pull_says_how_to_build_it(
    api: Any, cluster: Cluster, helm: Helm
) -> None:
    """A release pointed at a registry without the image: the operator's pod waits in
    ImagePullBackOff, and the finding says to build and push it (hack/build-images.sh)."""
    ref = "registry.example.com/ml/operator:0.0.9"
    await healthy(
        api, cluster, helm,
        "images.operator.repository=registry.example.com/ml/operator",
        "images.operator.tag=0.0.9",
    )  # fmt: skip
    waiting = {"reason": "ErrImagePull", "message": f'pull access denied for "{ref}"'}
    stuck = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mo-abc", "labels": {"app.kubernetes.io/instance": RELEASE}},
        "spec": {"containers": [{"name": "operator", "image": ref}]},
        "status": {
            "containerStatuses": [{"name": "operator", "image": ref, "state": {"waiting": waiting}}]
        },
    }
    await create(cluster, stuck, SYSTEM)
    findings = await doctor(api)
    pulled = failures(findings)[("image", f"{SYSTEM}/mo-abc")]
    assert f"{ref}: ErrImagePull: pull access denied" in pulled.detail
    assert "hack/build-images.sh REGISTRY" in pulled.fix
    (version,) = [f for f in findings if (f.check, f.where) == ("image version", "operator")]
    assert version.level == "warn"
    assert "hack/build-images.sh REGISTRY 0.1.0" in version.fix


async def plugin_finding(api: Any) -> Finding:
    """The doctor's NetworkPolicy enforcement check, reading the emulator's DaemonSets."""
    credentials = Credentials(server=str(api.url).rstrip("/"))

    async def connect() -> Credentials:
        return credentials

    client = KubeClient(connect, retries=0, user_agent="modelops-doctor")
    try:
        return cni_finding(await Doctor(client, RELEASE, SYSTEM).plugin_daemonsets())
    finally:
        await client.close()


async def test_finding_7_a_network_plugin_that_ignores_policies_fails(
    api: Any, cluster: Cluster
) -> None:
    serve_daemonsets(api)
    # Before any plugin is known: a warning to check by hand, not a pass.
    assert (await plugin_finding(api)).level == "warn"
    await install_network_plugin(api, cluster, "kube-flannel-ds", "kube-flannel", "kube-flannel")
    finding = await plugin_finding(api)
    assert finding.level == "fail"
    assert "flannel" in finding.detail
    assert "finding 7" in finding.fix
    # Calico's node agent beside it (canal-like): enforced.
    await install_network_plugin(api, cluster, "calico-node", "calico-node", "kube-system")
    finding = await plugin_finding(api)
    assert finding.level == "ok"
    assert "Calico" in finding.detail
