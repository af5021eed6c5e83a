"""Pod Security "restricted" for every pod the chart or the operator renders."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from modelops_operator.settings import Settings
from tests.support.chart import (
    K8S_VERSIONS,
    Helm,
    Manifest,
    find,
)
from tests.support.pod_security import pod_specs, restricted_violations


# --- pod security ------------------------------------------------------------------------------
def test_chart_pods_are_restricted(rendered: tuple[str, list[Manifest]]) -> None:
    _, manifests = rendered
    pods = [pod for m in manifests for pod in pod_specs(m)]
    assert pods, "the chart renders no pod"
    for metadata, pod in pods:
        assert restricted_violations(pod, metadata) == []


def _restricted_pod() -> Manifest:
    return {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "image": "x",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "c", "configMap": {"name": "x"}}],
    }


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
        (lambda p: p.update(hostPID=True), "hostPID"),
        (lambda p: p.update(hostIPC=True), "hostIPC"),
        (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "s"}}), "nfs"),
        (lambda p: p["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser"),
        (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda p: p["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccomp"),
        (lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"), "Escal"),
        (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged"),
        (lambda p: p["containers"][0]["securityContext"]["capabilities"].update(drop=[]), "ALL"),
        (
            lambda p: p["containers"][0]["securityContext"]["capabilities"].update(
                add=["SYS_ADMIN"]
            ),
            "SYS_ADMIN",
        ),
        (
            lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
            "hostPort",
        ),
        (
            lambda p: p["containers"][0]["securityContext"].update(runAsNonRoot=False),
            "runAsNonRoot",
        ),
        (
            lambda p: p["securityContext"].update(
                sysctls=[{"name": "kernel.msgmax", "value": "1"}]
            ),
            "sysctl",
        ),
        (lambda p: p.update(initContainers=[{"name": "i", "image": "x"}]), "initContainers[i]"),
    ],
)
def test_pss_checker_rejects(mutate: Any, expected: str) -> None:
    """The checker itself: the reference pod passes, each single breach is reported."""
    assert restricted_violations(_restricted_pod()) == []
    pod = _restricted_pod()
    mutate(pod)
    violations = restricted_violations(pod)
    assert any(expected in v for v in violations), violations


def _operator_rendered_workloads() -> list[Manifest]:
    """Every pod the operator renders for the examples (build and source Jobs, Triton revision,
    router, validation Job), with the Settings the default chart values configure."""
    from tests.support.image_commands import operator_workloads

    settings = Settings(
        store_pvc="modelops-engines",
        store_mac_key="test-store-mac-key-0123456789abcdef0123",
        transfer_key="test-transfer-key-0123456789abcdef01234",
    )
    return operator_workloads(settings)


def test_operator_rendered_pods_are_restricted() -> None:
    workloads = _operator_rendered_workloads()
    kinds = {m["kind"] for m in workloads}
    assert {"Job", "Deployment"} <= kinds
    for manifest in workloads:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{where} invalid for {version}: {err.message} at {err.path}")
        for metadata, pod in pod_specs(manifest):
            assert restricted_violations(pod, metadata) == [], where
            # Build Jobs and Triton pods never talk to the API server.
            assert pod.get("automountServiceAccountToken") is False, where


def test_tenant_pods_hold_nothing_of_the_store() -> None:
    """Every pod the operator runs in a tenant's namespace (source Job, Triton, router,
    validation): no store claim, no store Secret, no store key. Only build Jobs, in the
    operator's namespace, touch the store, and only their publishing step writes it."""
    import json

    workloads = _operator_rendered_workloads()
    tenant = [m for m in workloads if m["metadata"]["namespace"] == "ml"]
    assert {"Job", "Deployment"} <= {m["kind"] for m in tenant}
    for manifest in tenant:
        text = json.dumps(manifest)
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        assert "modelops-engines" not in text, where
        assert "modelops-store-key" not in text, where
        assert "MODELOPS_STORE_MAC_KEY" not in text, where
        assert "MODELOPS_TRANSFER_KEY" not in text, where
    builds = [m for m in workloads if m["metadata"]["namespace"] != "ml"]
    assert builds
    assert {m["metadata"]["namespace"] for m in builds} == {"modelops-system"}


def _inbox_volume(manifests: list[Manifest]) -> dict[str, Any]:
    server = next(
        m
        for m in find(manifests, "Deployment")
        if m["metadata"]["labels"].get("app.kubernetes.io/component") == "engine-server"
    )
    return next(v for v in server["spec"]["template"]["spec"]["volumes"] if v["name"] == "inbox")


def test_the_inbox_is_an_empty_dir_unless_it_should_survive_a_restart(helm: Helm) -> None:
    default = helm.template()
    assert "emptyDir" in _inbox_volume(default)
    assert not [
        c for c in find(default, "PersistentVolumeClaim") if "inbox" in c["metadata"]["name"]
    ]
    kept = helm.template(
        values={
            "store": {"server": {"inboxPersistence": {"enabled": True, "storageClassName": "fast"}}}
        }
    )
    volume = _inbox_volume(kept)
    (claim,) = [c for c in find(kept, "PersistentVolumeClaim") if "inbox" in c["metadata"]["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    # Never the store's claim: the engine server mounts the store read-only.
    assert claim["metadata"]["name"] != "modelops-engines"
