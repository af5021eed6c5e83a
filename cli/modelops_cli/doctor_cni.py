"""PURE: does the cluster's network plugin enforce NetworkPolicies? (`modelops doctor`)

The Kubernetes API serves NetworkPolicy objects on every cluster; only the network plugin (CNI)
enforces them, and no API says whether it does. The doctor judges by the plugin's DaemonSets
in the namespaces plugins install into (a tenant cannot create DaemonSets there): a known
enforcing plugin passes, a known non-enforcing one alone fails (finding 7's isolation does not
hold), anything else is a warning to check by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .doctor_checks import Finding

Obj = Mapping[str, Any]

# Where network plugins put their node agents. Never a namespace tenants are given.
PLUGIN_NAMESPACES = (
    "kube-system",
    "calico-system",
    "cilium",
    "kube-flannel",
    "openshift-ovn-kubernetes",
    "openshift-sdn",
)
# DaemonSet (or container) name -> the plugin, for plugins that enforce NetworkPolicy.
ENFORCING = {
    "calico-node": "Calico",
    "canal": "Canal (Calico policy)",
    "cilium": "Cilium",
    "anetd": "GKE Dataplane V2 (Cilium)",
    "antrea-agent": "Antrea",
    "kube-router": "kube-router",
    "weave-net": "Weave Net",
    "azure-npm": "Azure Network Policy Manager",
    "kube-network-policies": "kube-network-policies",
    "ovnkube-node": "OVN-Kubernetes",
    "sdn": "OpenShift SDN",
}
# Plugins that route pods but ignore NetworkPolicy objects.
IGNORING = {
    "kube-flannel-ds": "flannel",
    "flannel": "flannel",
    "aws-node": "Amazon VPC CNI",
}
# Plugins whose enforcement depends on their version: kind's kindnet enforces only beside the
# kube-network-policies DaemonSet (kind 0.24 and later), standalone kindnet from 1.3 on.
UNSURE = {"kindnet": "kindnet"}
AWS_POLICY_FLAG = "--enable-network-policy=true"
FIX = (
    "use a network plugin that enforces NetworkPolicy (Calico, Cilium, Antrea; on EKS the VPC "
    "CNI's network policy agent with enable-network-policy=true): without one, any pod reaches "
    "any tenant's Triton pods and the engine server directly (docs/security.md, finding 7)"
)


def _containers(daemonset: Obj) -> list[Obj]:
    spec = ((daemonset.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _aws_policy_agent_on(daemonset: Obj) -> bool:
    """The VPC CNI enforces policies only with its agent container started with the flag."""
    for container in _containers(daemonset):
        if container.get("name") == "aws-network-policy-agent":
            return AWS_POLICY_FLAG in (container.get("args") or [])
    return False


def plugins(daemonsets: Sequence[Obj]) -> tuple[list[str], list[str], list[str]]:
    """(enforcing, ignoring, unsure) plugins found among the DaemonSets of PLUGIN_NAMESPACES."""
    enforcing: list[str] = []
    ignoring: list[str] = []
    unsure: list[str] = []
    for daemonset in daemonsets:
        meta = daemonset.get("metadata") or {}
        if meta.get("namespace") not in PLUGIN_NAMESPACES:
            continue
        name = str(meta.get("name") or "")
        where = f"{name} ({meta.get('namespace')})"
        names = {name, *(str(c.get("name") or "") for c in _containers(daemonset))}
        if name == "aws-node" and _aws_policy_agent_on(daemonset):
            enforcing.append(f"Amazon VPC CNI with its network policy agent: {where}")
        elif found := sorted({ENFORCING[n] for n in names if n in ENFORCING}):
            enforcing.append(f"{', '.join(found)}: {where}")
        elif name in IGNORING:
            ignoring.append(f"{IGNORING[name]}: {where}")
        elif name in UNSURE:
            unsure.append(f"{UNSURE[name]}: {where}")
    return enforcing, ignoring, unsure


def cni_finding(daemonsets: Sequence[Obj] | None) -> Finding:
    """Whether the NetworkPolicies modelops renders are enforced (None: DaemonSets unreadable)."""
    check, where = "NetworkPolicy enforcement", "cluster"
    if daemonsets is None:
        detail = f"could not list DaemonSets in {', '.join(PLUGIN_NAMESPACES)}: cannot tell"
        return Finding(check, where, "warn", detail, FIX)
    enforcing, ignoring, unsure = plugins(daemonsets)
    if enforcing:
        return Finding(check, where, "ok", "enforced by " + "; ".join(enforcing))
    if unsure:
        detail = "; ".join(unsure) + ": enforces NetworkPolicies in some versions only, check"
        return Finding(check, where, "warn", detail, FIX)
    if ignoring:
        detail = "the network plugin ignores NetworkPolicies: " + "; ".join(ignoring)
        return Finding(check, where, "fail", detail, FIX)
    detail = "no known network plugin found: check by hand that NetworkPolicies are enforced"
    return Finding(check, where, "warn", detail, FIX)
