"""What kmock does not do by itself, done as an API server would, for `modelops doctor`:
answer SubjectAccessReviews from the Roles, ClusterRoles and bindings stored in the emulator
(RBAC's union of rules: a RoleBinding grants in its namespace, a ClusterRoleBinding everywhere),
and answer GETs of the Namespaces the test side keeps (kmock cannot store them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kmock

from tests.support.chart_cluster import CHART_RESOURCES
from tests.support.kubernetes_emulator import Cluster

Obj = dict[str, Any]
ROLES, BINDINGS, CLUSTER_ROLES, CLUSTER_BINDINGS = (
    next(res for res in CHART_RESOURCES if res.kind == kind)
    for kind in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
)


def _stored(cluster: Cluster, plural: str) -> Iterator[Obj]:
    for (resource, _, _), obj in cluster.api.objects.items():
        if resource.plural == plural and not obj.deleted:
            yield obj.last.raw


def _binds(binding: Obj, user: str) -> bool:
    for subject in binding.get("subjects") or []:
        if subject.get("kind") == "ServiceAccount":
            name = f"system:serviceaccount:{subject.get('namespace')}:{subject.get('name')}"
            if name == user:
                return True
        elif subject.get("kind") == "User" and subject.get("name") == user:
            return True
    return False


def _allows(rules: list[Obj], attributes: Obj) -> bool:
    resource = attributes.get("resource", "")
    if attributes.get("subresource"):
        resource += "/" + attributes["subresource"]
    return any(
        attributes.get("group", "") in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and attributes.get("verb") in rule.get("verbs", [])
        for rule in rules
    )


def allowed(cluster: Cluster, user: str, attributes: Obj) -> bool:
    """Whether RBAC as stored lets `user` do what `attributes` describe."""
    namespace = attributes.get("namespace")
    cluster_roles = {r["metadata"]["name"]: r for r in _stored(cluster, CLUSTER_ROLES.plural)}
    for binding in _stored(cluster, CLUSTER_BINDINGS.plural):
        role = cluster_roles.get(binding["roleRef"]["name"])
        if role and _binds(binding, user) and _allows(role.get("rules") or [], attributes):
            return True
    if not namespace:
        return False
    roles = {
        (r["metadata"].get("namespace"), r["metadata"]["name"]): r
        for r in _stored(cluster, ROLES.plural)
    }
    for binding in _stored(cluster, BINDINGS.plural):
        if binding["metadata"].get("namespace") != namespace or not _binds(binding, user):
            continue
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            role = cluster_roles.get(ref["name"])
        else:
            role = roles.get((namespace, ref["name"]))
        if role and _allows(role.get("rules") or [], attributes):
            return True
    return False


def serve_access_reviews(api: kmock.KubernetesEmulator, cluster: Cluster) -> None:
    """POST .../subjectaccessreviews answers with status.allowed, as the API server does."""

    def answer(request: Any) -> Obj:
        review = dict(request.data)
        spec = review.get("spec") or {}
        verdict = allowed(cluster, spec.get("user", ""), spec.get("resourceAttributes") or {})
        return {**review, "status": {"allowed": verdict}}

    api["post /apis/authorization.k8s.io/v1/subjectaccessreviews"] << answer


def serve_namespaces(api: kmock.KubernetesEmulator, cluster: Cluster) -> None:
    """GET /api/v1/namespaces/NAME of the namespaces the test side keeps, answered from what it
    keeps at the time of the request (404 once a test removed one)."""

    def reader(name: str) -> Any:
        def read() -> Obj:
            if name not in cluster.namespaces:
                raise kmock.KubernetesObjectNotFoundError()
            return cluster.namespaces[name]

        return read

    for name in list(cluster.namespaces):
        api[f"get /api/v1/namespaces/{name}"] << reader(name)
