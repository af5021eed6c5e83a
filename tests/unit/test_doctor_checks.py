"""modelops doctor's pure checks, as tables: NetworkPolicy reach, image references, RBAC,
engine-server findings and which release owns the CRD."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_cli.doctor_checks import (
    crd_finding,
    engine_server_findings,
    image_findings,
    rbac_finding,
    repository,
    tag,
    traffic_allowed,
    version_findings,
)

SERVER = ("modelops-system", {"app.kubernetes.io/component": "engine-server"})
TENANT = ("ml", {"app.kubernetes.io/name": "triton"})
LABELS = {
    "modelops-system": {"kubernetes.io/metadata.name": "modelops-system"},
    "ml": {"kubernetes.io/metadata.name": "ml", "team": "a"},
}
PORT = (8080, "http")


def policy(ingress: list[Any] | None, selector: Any = None, types: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if types is not None:
        spec["policyTypes"] = types
    return {"spec": spec}


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        ([], True),  # no policy: not isolated
        ([policy([])], False),  # deny all ingress
        ([policy([{}])], True),  # one empty rule allows everyone
        ([policy([{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}])], True),
        ([policy([{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}])], False),
        ([policy([{"from": [{"namespaceSelector": {}}], "ports": [{"port": 9000}]}])], False),
        ([policy([{"from": [{"namespaceSelector": {}}], "ports": [{"port": "http"}]}])], True),
        ([policy([{"from": [{"podSelector": {}}]}])], False),  # its own namespace only
        ([policy([{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}])], None),
        ([policy([], selector={"matchLabels": {"app": "other"}})], True),  # selects others
        ([policy([], selector={"matchExpressions": [{"key": "x", "operator": "Exists"}]})], False),
        ([policy([]), policy([{}])], True),  # policies add up
        ([policy(None, types=["Egress"])], True),  # no ingress isolation
    ],
)
def test_ingress_to_the_engine_server(policies: list[Any], expected: bool | None) -> None:
    assert traffic_allowed(policies, "Ingress", SERVER, TENANT, PORT, LABELS) is expected


def test_egress_from_a_tenant_namespace() -> None:
    deny = {"spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": []}}
    assert traffic_allowed([deny], "Egress", TENANT, SERVER, PORT, LABELS) is False
    to_system = {
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": LABELS["modelops-system"]}}]}],
        }
    }
    assert traffic_allowed([deny, to_system], "Egress", TENANT, SERVER, PORT, LABELS) is True


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("nvcr.io/nvidia/tritonserver:26.10-py3", True),
        ("ghcr.io/modelops/builder:0.1.0-ngc26.10@sha256:" + "a" * 64, True),
        ("localhost:5000/builder", True),
        ("haproxy", True),
        ("nvcr.io/nvidia/tritonserver:26.10 py3", False),
        ("nvcr.io/NVIDIA/triton", False),
        ("image@sha256:short", False),
        ("", False),
    ],
)
def test_image_references(ref: str, ok: bool) -> None:
    findings = image_findings({"triton": ref}, [])
    assert (findings[-1].level == "ok") is ok


def test_rbac_and_engine_server_findings_name_the_fix() -> None:
    finding = rbac_finding("ml", "modelops", [("batch", "jobs", "create")], "modelops")
    assert (finding.level, finding.detail) == ("fail", "modelops may not create jobs.batch")
    assert "watchNamespaces" in finding.fix
    assert rbac_finding("ml", "modelops", [], "modelops").level == "ok"
    down = {"metadata": {"name": "s"}, "status": {"availableReplicas": 0}}
    pending = {"status": {"phase": "Pending"}}
    levels = [f.level for f in engine_server_findings(down, {}, pending, "engines")]
    assert levels == ["fail", "fail"]
    up = {"metadata": {"name": "s"}, "status": {"availableReplicas": 1}}
    bound = {"status": {"phase": "Bound"}}
    assert [f.level for f in engine_server_findings(up, {}, bound, "engines")] == ["ok", "ok"]


@pytest.mark.parametrize(
    ("ref", "repo", "found"),
    [
        ("ghcr.io/modelops/operator:0.1.0", "ghcr.io/modelops/operator", "0.1.0"),
        ("localhost:5000/builder", "localhost:5000/builder", None),
        ("localhost:5000/builder:0.1.0-ngc26.10", "localhost:5000/builder", "0.1.0-ngc26.10"),
        ("r.example/ml/operator@sha256:" + "a" * 64, "r.example/ml/operator", None),
        ("r.example/operator:0.2.0@sha256:" + "a" * 64, "r.example/operator", "0.2.0"),
        ("haproxy", "haproxy", None),
    ],
)
def test_repository_and_tag(ref: str, repo: str, found: str | None) -> None:
    assert (repository(ref), tag(ref)) == (repo, found)


IMAGES = {
    "operator": "r.example/ml/operator:0.1.0",
    "builder": "r.example/ml/builder:0.1.0-ngc26.10",
    "triton": "nvcr.io/nvidia/tritonserver:26.10-py3",
    "router": "haproxy:3.0",
}


@pytest.mark.parametrize(
    ("images", "app_version", "levels"),
    [
        (IMAGES, "0.1.0", {"operator": "ok", "builder": "ok"}),
        (IMAGES, "0.2.0", {"operator": "warn", "builder": "warn"}),
        (
            {**IMAGES, "operator": "r.example/ml/operator:0.1.0-dev"},
            "0.1.0",
            {"operator": "warn", "builder": "ok"},
        ),
        (
            {**IMAGES, "builder": "r.example/ml/builder:0.1.0"},
            "0.1.0",
            {"operator": "ok", "builder": "warn"},
        ),
        (
            {**IMAGES, "operator": "r.example/ml/operator@sha256:" + "b" * 64},
            "0.2.0",
            {"operator": "ok", "builder": "warn"},
        ),
    ],
    ids=["same", "older-images", "operator-dev-tag", "builder-without-ngc", "digest-only"],
)
def test_project_images_are_the_chart_s_app_version(
    images: dict[str, str], app_version: str, levels: dict[str, str]
) -> None:
    findings = version_findings(images, app_version)
    assert {f.where: f.level for f in findings} == levels
    for finding in findings:
        if finding.level == "warn":
            assert f"hack/build-images.sh REGISTRY {app_version}" in finding.fix
            assert f"is not the chart's appVersion {app_version}" in finding.detail


def test_no_app_version_is_a_warning() -> None:
    assert [f.level for f in version_findings(IMAGES, None)] == ["warn"]


def _pull_failure(image: str, reason: str = "ImagePullBackOff") -> dict[str, object]:
    waiting = {"reason": reason, "message": f'Back-off pulling image "{image}"'}
    return {
        "metadata": {"namespace": "modelops-system", "name": "p"},
        "status": {"containerStatuses": [{"image": image, "state": {"waiting": waiting}}]},
    }


@pytest.mark.parametrize(
    ("image", "reason", "build_and_push"),
    [
        ("r.example/ml/operator:0.1.0", "ImagePullBackOff", True),
        ("r.example/ml/builder:0.1.0-ngc26.10", "ErrImagePull", True),
        ("r.example/ml/builder:0.1.0-ngc26.11", "ErrImagePull", True),  # another tag, ours
        ("nvcr.io/nvidia/tritonserver:26.10-py3", "ImagePullBackOff", False),
        ("haproxy:3.0", "ErrImagePull", False),
    ],
)
def test_a_pull_failure_of_our_images_says_how_to_build_and_push(
    image: str, reason: str, build_and_push: bool
) -> None:
    (finding,) = image_findings(IMAGES, [_pull_failure(image, reason)])
    assert (finding.check, finding.where, finding.level) == ("image", "modelops-system/p", "fail")
    assert f"{image}: {reason}: Back-off pulling image" in finding.detail
    assert ("hack/build-images.sh REGISTRY" in finding.fix) is build_and_push
    assert ("images.pullSecrets" in finding.fix) is not build_and_push


def test_a_waiting_container_that_is_not_pulling_is_no_finding() -> None:
    creating = _pull_failure("r.example/ml/operator:0.1.0", "ContainerCreating")
    assert [f.level for f in image_findings(IMAGES, [creating])] == ["ok"]


def _crd(owner: tuple[str, str] | None, schema: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "modeldeployments.modelops.dev"}
    if owner is not None:
        meta["annotations"] = {
            "meta.helm.sh/release-name": owner[0],
            "meta.helm.sh/release-namespace": owner[1],
        }
    return {"metadata": meta, "spec": {"versions": [{"name": "v1alpha1", "schema": schema}]}}


EXPECTED = _crd(None, {"openAPIV3Schema": {"type": "object"}})


@pytest.mark.parametrize(
    ("owner", "current", "level", "detail", "fix"),
    [
        (("b", "b-system"), True, "ok", "owned by this release (b)", ""),
        (("a", "a-system"), True, "ok", "owned by release a in a-system", ""),
        (None, True, "ok", "applied outside Helm", ""),
        # A stale schema is fixed by the release that owns the CRD, not by this one.
        (("a", "a-system"), False, "fail", "differs", "helm upgrade a -n a-system"),
        (("b", "b-system"), False, "fail", "differs", "helm upgrade b -n b-system"),
        (None, False, "fail", "differs", "kubectl apply -f crds/"),
    ],
)
def test_the_crd_finding_names_its_owner_and_who_upgrades_it(
    owner: tuple[str, str] | None, current: bool, level: str, detail: str, fix: str
) -> None:
    schema = EXPECTED["spec"]["versions"][0]["schema"] if current else {"type": "string"}
    found = crd_finding(_crd(owner, schema), EXPECTED, "b", "b-system")
    assert (found.level, detail in found.detail) == (level, True), found
    assert fix in (found.fix or "")
