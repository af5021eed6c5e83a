"""The chart's monitoring: PodMonitors (on where the cluster serves prometheus-operator's CRDs),
the PrometheusRule (the plain rules file as it is) and the dashboards ConfigMap, with the real
helm; the relabelling PodMonitors do is exercised against a real Prometheus in
tests/integration/test_observability.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from modelops_operator.render.common import ROUTER_APP, TRITON_APP
from modelops_operator.render.haproxy import AGENT_PORT, STATS_PORT
from modelops_operator.render.revision import METRICS_PORT
from modelops_operator.render.router import render_router_deployment
from modelops_operator.settings import Settings
from tests.support.chart import CHART, FULLNAME, NAMESPACE, RELEASE, Helm, Manifest, find, one
from tests.support.render_cases import make_md

MONITORING = "monitoring.coreos.com/v1"
RULES = CHART / "rules" / "modelops-alerts.yaml"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))


def render(helm: Helm, values: dict[str, Any] | None = None, *, crds: bool) -> list[Manifest]:
    args = list(helm.template_args((), values))
    if crds:  # what `helm install` sees on a cluster with prometheus-operator
        args += ["--api-versions", MONITORING]
    result = helm.run(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kinds(manifests: list[Manifest]) -> set[str]:
    return {m["kind"] for m in manifests}


@pytest.mark.parametrize(
    ("enabled", "crds", "expected"),
    [("auto", False, False), ("auto", True, True), (True, False, True), (False, True, False)],
)
def test_monitors_and_rules_follow_the_cluster_unless_forced(
    helm: Helm, enabled: Any, crds: bool, expected: bool
) -> None:
    values = {
        "metrics": {"podMonitors": {"enabled": enabled}, "prometheusRule": {"enabled": enabled}}
    }
    rendered = kinds(render(helm, values, crds=crds))
    assert ({"PodMonitor", "PrometheusRule"} <= rendered) is expected
    assert not ({"PodMonitor", "PrometheusRule"} & rendered) or expected


def test_a_string_other_than_auto_is_refused(helm: Helm) -> None:
    error = helm.template_error(values={"metrics": {"podMonitors": {"enabled": "yes"}}})
    assert "podMonitors" in error
    assert "enabled" in error


def test_pod_monitors_select_the_operators_pods_on_their_ports_and_relabel_them(helm: Helm) -> None:
    manifests = render(helm, crds=True)
    monitors = {m["metadata"]["name"]: m for m in find(manifests, "PodMonitor")}
    assert set(monitors) == {f"{FULLNAME}-{n}" for n in ("triton", "router", "engine-server")}
    triton, router = monitors[f"{FULLNAME}-triton"], monitors[f"{FULLNAME}-router"]
    assert triton["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == TRITON_APP
    assert router["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == ROUTER_APP
    assert triton["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # The ports by name, as the operator renders the router's pods and the Triton pods.
    pod = render_router_deployment(make_md(), Settings())["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c["ports"]}
    router_ports = [e["port"] for e in router["spec"]["podMetricsEndpoints"]]
    assert [ports[name] for name in router_ports] == [STATS_PORT, AGENT_PORT]
    assert [e["port"] for e in triton["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert ports["metrics"] == METRICS_PORT  # HAProxy forwards the stable revision's page there
    for monitor in (triton, router):
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            targets = {r["targetLabel"]: r for r in endpoint["relabelings"]}
            assert {"job", "namespace", "pod", "modeldeployment"} <= set(targets)
            assert targets["modeldeployment"]["sourceLabels"] == [
                "__meta_kubernetes_pod_label_modelops_dev_deployment"
            ]
            assert ("revision" in targets) is (monitor is triton)


def test_cluster_wide_monitors_look_in_every_namespace(helm: Helm) -> None:
    manifests = render(helm, {"clusterWide": True}, crds=True)
    for monitor in find(manifests, "PodMonitor"):
        if monitor["metadata"]["name"].endswith("engine-server"):
            assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        else:
            assert monitor["spec"]["namespaceSelector"] == {"any": True}


def test_the_prometheus_rule_is_the_plain_rules_file(helm: Helm) -> None:
    rule = one(render(helm, crds=True), "PrometheusRule", FULLNAME)
    assert rule["apiVersion"] == MONITORING
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_the_dashboards_config_map_carries_every_dashboard_for_the_sidecar(helm: Helm) -> None:
    config = one(render(helm, crds=False), "ConfigMap", f"{FULLNAME}-dashboards")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["namespace"] == NAMESPACE
    assert set(config["data"]) == {path.name for path in DASHBOARDS}
    assert len(DASHBOARDS) == 3
    for path in DASHBOARDS:
        assert json.loads(config["data"][path.name]) == json.loads(path.read_text())
    moved = render(helm, {"metrics": {"dashboards": {"namespace": "monitoring"}}}, crds=False)
    assert (
        one(moved, "ConfigMap", f"{FULLNAME}-dashboards")["metadata"]["namespace"] == "monitoring"
    )
    off = render(helm, {"metrics": {"dashboards": {"enabled": False}}}, crds=False)
    assert not find(off, "ConfigMap", f"{FULLNAME}-dashboards")
    assert RELEASE in FULLNAME
