"""helm lint --strict and helm template with every values file: valid Kubernetes, unique names."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest

from tests.support.chart import (
    CASE_IDS,
    CHART,
    CI_VALUES,
    FULLNAME,
    K8S_VERSIONS,
    NAMESPACE,
    VALUES_CASES,
    Helm,
    Manifest,
    one,
)


# --- lint and render ---------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "files"), VALUES_CASES, ids=CASE_IDS)
def test_lint_strict(helm: Helm, name: str, files: list[Path]) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for path in files:
        args += ["--values", str(path)]
    result = helm.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout


def test_ci_values_cover_the_optional_parts(helm: Helm) -> None:
    """Each optional resource kind is rendered by at least one ci/*.yaml, and not by default."""
    default = {m["kind"] for m in helm.template()}
    assert {"Deployment", "ServiceAccount", "Role", "RoleBinding", "ClusterRole"} <= default
    assert {"CustomResourceDefinition", "PersistentVolumeClaim", "Service"} <= default
    # NetworkPolicies are on wherever the API is served (helm template assumes it: finding 7).
    assert "NetworkPolicy" in default
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & default
    kinds: set[str] = set()
    for path in CI_VALUES:
        kinds |= {m["kind"] for m in helm.template([path])}
    assert {"NetworkPolicy", "ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
    assert "ClusterRoleBinding" in kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_are_valid_kubernetes(rendered: tuple[str, list[Manifest]], version: str) -> None:
    _, manifests = rendered
    unknown = []
    for manifest in manifests:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.append(manifest)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where} invalid for Kubernetes {version}: {err.message} at {err.path}")
    for manifest in unknown:
        # prometheus-operator's kinds; PodMonitors and the PrometheusRule: test_chart_monitoring.
        kind = manifest["kind"]
        assert kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"), f"no schema for {kind}"
        if kind == "ServiceMonitor":
            check_service_monitor(manifest, manifests)


def check_service_monitor(monitor: Manifest, manifests: list[Manifest]) -> None:
    """prometheus-operator's CRD is not ours: check the fields we set and that it finds the
    metrics Service's port."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"namespaceSelector", "selector", "endpoints"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service = one(manifests, "Service", f"{FULLNAME}-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    duration = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "honorLabels"}
        assert endpoint["honorLabels"] is True  # the ModelDeployments' namespace label wins
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert duration.match(endpoint["interval"])
        assert duration.match(endpoint["scrapeTimeout"])


def test_names_are_unique(rendered: tuple[str, list[Manifest]]) -> None:
    _, manifests = rendered
    keys = [
        (m["apiVersion"], m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"])
        for m in manifests
    ]
    assert len(keys) == len(set(keys))
