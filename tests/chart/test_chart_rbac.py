"""RBAC: exactly the operator's REQUIRED_RULES, no wildcard, no Secret."""

from __future__ import annotations

from modelops_operator.k8s.permissions import LEASE_RULES, STORE_KEY_RULES
from tests.support.chart import (
    FULLNAME,
    NAMESPACE,
    REQUIRED,
    REQUIRED_CLUSTER,
    REQUIRED_NAMESPACED,
    VALUES_CASES,
    Manifest,
    expand,
    find,
    grants_of,
    load_values,
    one,
)


# --- RBAC --------------------------------------------------------------------------------------
def test_rbac_is_exactly_the_required_rules(rendered: tuple[str, list[Manifest]]) -> None:
    name, manifests = rendered
    values = load_values(dict(VALUES_CASES)[name])
    roles = grants_of(manifests, "Role")
    # The leader Lease: get/create/patch on leases, in the release namespace only.
    lease = roles.pop((NAMESPACE, f"{FULLNAME}-leader-election"))
    assert lease == expand(LEASE_RULES)
    # The store's keys: create-only on Secrets, in the release namespace, when the chart makes
    # them (none with an existing Secret).
    store_keys = roles.pop((NAMESPACE, f"{FULLNAME}-store-keys"), None)
    if values["store"]["keySecret"]["name"]:
        assert store_keys is None
    else:
        assert store_keys == expand(STORE_KEY_RULES) == {("", "secrets", "create")}
    cluster_roles = grants_of(manifests, "ClusterRole")
    discovery = [g for g in cluster_roles.values() if g == REQUIRED_CLUSTER]
    assert len(discovery) == 1, "one ClusterRole with exactly the cluster-scoped rules"
    if values["clusterWide"]:
        assert roles == {}
        assert sorted(cluster_roles.values(), key=len) == [REQUIRED_CLUSTER, REQUIRED_NAMESPACED]
    else:
        assert len(cluster_roles) == 1
        # The watched namespaces, and the release namespace where build Jobs run.
        namespaces = {*(values["watchNamespaces"] or [NAMESPACE]), NAMESPACE}
        assert sorted(ns or "" for ns, _ in roles) == sorted(namespaces)
        for grants in roles.values():
            assert grants == REQUIRED_NAMESPACED
    # Every role is bound to the operator's ServiceAccount, in its namespace.
    account = one(manifests, "ServiceAccount")["metadata"]["name"]
    for kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        bound = set()
        for binding in find(manifests, kind):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
            ]
            assert binding["roleRef"]["kind"] == role_kind
            bound.add((binding["metadata"].get("namespace"), binding["roleRef"]["name"]))
        assert bound == set(grants_of(manifests, role_kind))
    assert (NAMESPACE, f"{FULLNAME}-leader-election") in {
        (b["metadata"]["namespace"], b["roleRef"]["name"]) for b in find(manifests, "RoleBinding")
    }


def test_rbac_has_no_wildcard_and_no_secret_read(rendered: tuple[str, list[Manifest]]) -> None:
    _, manifests = rendered
    for manifest in find(manifests, "Role") + find(manifests, "ClusterRole"):
        if manifest["metadata"]["name"] == f"{FULLNAME}-store-keys":
            assert manifest["rules"] == STORE_KEY_RULES  # create, nothing else
            continue
        assert "aggregationRule" not in manifest
        for rule in manifest["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames/URLs
            for field in rule.values():
                assert all("*" not in item for item in field), rule
            assert "secrets" not in rule["resources"], rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_required_rules_are_least_privilege() -> None:
    """The agreed list itself: no wildcard, no Secret, no update (the operator patches)."""
    for group, resource, verb in REQUIRED:
        assert "*" not in (group + resource + verb)
        assert resource != "secrets"
        assert verb in {"get", "list", "watch", "create", "patch", "delete"}
    assert ("modelops.dev", "modeldeployments", "update") not in REQUIRED
    assert {("", "secrets", v) for v in ("get", "list")}.isdisjoint(REQUIRED)
    cluster_scoped = {
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    assert cluster_scoped == REQUIRED_CLUSTER
