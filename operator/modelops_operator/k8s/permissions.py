"""Exactly the API access the operator needs: the Helm chart's RBAC is checked against this list.

kopf's own needs are included: it watches ModelDeployments and the children (the caches) and,
even when it watches one namespace, lists/watches namespaces and CRDs cluster-wide. It writes
nothing itself (watching handlers only) and runs standalone: no peering objects. The operator
patches ModelDeployments' status, and their metadata once to drop earlier versions' finalizers.
Leader election needs get/create/patch on Leases in the operator's own namespace only
(LEASE_RULES, a Role there). The operator never reads Secrets: they reach build Jobs and
Triton pods only through the kubelet. Its pod's init container may create Secrets in that
namespace (STORE_KEY_RULES: the store's keys when missing), never read or change one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from ..api import GROUP


class PolicyRule(TypedDict):
    """An rbac.authorization.k8s.io/v1 PolicyRule (resource rules only)."""

    apiGroups: list[str]
    resources: list[str]
    verbs: list[str]


CHILD_VERBS = ["get", "list", "watch", "create", "patch", "delete"]

REQUIRED_RULES: list[PolicyRule] = [
    {
        "apiGroups": [GROUP],
        "resources": ["modeldeployments"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {"apiGroups": [GROUP], "resources": ["modeldeployments/status"], "verbs": ["get", "patch"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": CHILD_VERBS},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": CHILD_VERBS},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": CHILD_VERBS},
    {"apiGroups": [""], "resources": ["services"], "verbs": CHILD_VERBS},
    # Only used in GatewayAPI traffic mode; a cluster without the CRDs answers 404, handled.
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["httproutes", "grpcroutes"],
        "verbs": CHILD_VERBS,
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    # Cluster-scoped, needed by kopf even for a single watched namespace.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
]

# In the operator's (the Helm release's) namespace only.
LEASE_RULES: list[PolicyRule] = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "create", "patch"],
    },
]

# In the operator's namespace only, for `modelops store-keys` (the operator pod's init container).
STORE_KEY_RULES: list[PolicyRule] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
]

CLUSTER_SCOPED = frozenset(
    {("", "namespaces"), ("apiextensions.k8s.io", "customresourcedefinitions")}
)

Grant = tuple[str, str, str]


def grants(rules: Iterable[PolicyRule] = REQUIRED_RULES) -> frozenset[Grant]:
    """Every (apiGroup, resource, verb) the rules allow."""
    return frozenset(
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    )


def missing(calls: Iterable[Grant], rules: Iterable[PolicyRule] | None = None) -> set[Grant]:
    """The calls that the rules (default: every rule the chart grants) do not allow."""
    rules = [*REQUIRED_RULES, *LEASE_RULES] if rules is None else rules
    allowed = grants(rules)
    return {call for call in calls if call not in allowed}
