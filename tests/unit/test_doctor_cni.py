"""Finding 7: `modelops doctor` says whether the network plugin enforces NetworkPolicies, from
the plugin's DaemonSets (tables of real plugins' DaemonSet names and containers)."""

from __future__ import annotations

from typing import Any

import pytest

from modelops_cli.doctor_cni import cni_finding


def daemonset(
    name: str, namespace: str = "kube-system", containers: list[Any] | None = None
) -> dict[str, Any]:
    spec = {"containers": containers if containers is not None else [{"name": name}]}
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": spec}},
    }


AWS_AGENT_OFF = daemonset(
    "aws-node",
    containers=[
        {"name": "aws-node"},
        {"name": "aws-network-policy-agent", "args": ["--enable-network-policy=false"]},
    ],
)
AWS_AGENT_ON = daemonset(
    "aws-node",
    containers=[
        {"name": "aws-node"},
        {"name": "aws-network-policy-agent", "args": ["--enable-network-policy=true"]},
    ],
)
CANAL = daemonset("canal", containers=[{"name": "calico-node"}, {"name": "kube-flannel"}])
KIND_WITH_POLICIES = [daemonset("kindnet"), daemonset("kube-network-policies")]

CASES = [
    ("calico (manifest)", [daemonset("calico-node")], "ok"),
    ("calico (operator)", [daemonset("calico-node", "calico-system")], "ok"),
    ("cilium", [daemonset("cilium"), daemonset("kube-proxy")], "ok"),
    ("gke dataplane v2", [daemonset("anetd")], "ok"),
    ("canal: flannel with calico policy", [CANAL], "ok"),
    ("antrea", [daemonset("antrea-agent")], "ok"),
    ("eks with the policy agent on", [AWS_AGENT_ON], "ok"),
    ("kind 0.24+", KIND_WITH_POLICIES, "ok"),
    ("flannel alone", [daemonset("kube-flannel-ds", "kube-flannel")], "fail"),
    ("eks, policy agent off", [AWS_AGENT_OFF], "fail"),
    ("eks, old vpc cni", [daemonset("aws-node")], "fail"),
    ("kindnet alone", [daemonset("kindnet")], "warn"),
    ("nothing known", [daemonset("kube-proxy")], "warn"),
    ("calico named in a tenant namespace", [daemonset("calico-node", "ml")], "warn"),
    (
        "flannel with a forged calico elsewhere",
        [daemonset("flannel"), daemonset("cilium", "ml")],
        "fail",
    ),
]


@pytest.mark.parametrize(("case", "daemonsets", "level"), CASES, ids=[c[0] for c in CASES])
def test_finding_7_doctor_reports_a_plugin_that_ignores_policies(
    case: str, daemonsets: list[Any], level: str
) -> None:
    finding = cni_finding(daemonsets)
    assert finding.level == level, (case, finding.detail)
    if level != "ok":
        assert "NetworkPolicy" in finding.fix
        assert "finding 7" in finding.fix


def test_finding_7_doctor_cannot_tell_without_reading_daemonsets() -> None:
    finding = cni_finding(None)
    assert finding.level == "warn"
    assert "cannot tell" in finding.detail


def test_finding_7_doctor_names_the_plugin() -> None:
    assert "Calico" in cni_finding([daemonset("calico-node")]).detail
    assert "flannel" in cni_finding([daemonset("kube-flannel-ds", "kube-flannel")]).detail
