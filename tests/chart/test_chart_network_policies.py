"""Finding 7: the chart's NetworkPolicies, rendered by the real helm, judged peer by peer.

Each case is (pod, peer, port, allowed?): the policies of the pod's namespace decide (the
evaluator is `traffic_allowed`, the one `modelops doctor` uses, on plain matchLabels). Tenants
control their namespaces' pod labels, never a namespace's `kubernetes.io/metadata.name`: every
"forged" case is a pod in a tenant namespace carrying the labels of a trusted pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pytest

from modelops_cli.doctor_checks import traffic_allowed
from tests.support.chart import FULLNAME, NAMESPACE, RELEASE, Helm, Manifest, find, one

WATCHED = ["ml", "vision"]
OTHER = "evil"  # a tenant namespace the release does not watch
VALUES = {"watchNamespaces": WATCHED}

Pod = tuple[str, Mapping[str, str]]
OPERATOR: Pod = (
    NAMESPACE,
    {
        "app.kubernetes.io/name": "modelops",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "operator",
    },
)
SERVER: Pod = (NAMESPACE, {**OPERATOR[1], "app.kubernetes.io/component": "engine-server"})


def modelops_pod(namespace: str, app: str, deployment: str = "resnet") -> Pod:
    """A pod the operator renders (render/common.py's labels)."""
    labels = {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/managed-by": "modelops",
        "modelops.dev/deployment": deployment,
    }
    return namespace, labels


def other_pod(namespace: str) -> Pod:
    return namespace, {"app": "client"}


def allowed(
    policies: list[Manifest],
    direction: Literal["Ingress", "Egress"],
    pod: Pod,
    peer: Pod,
    port: int,
    port_name: str = "",
) -> bool | None:
    """Whether the policies of `pod`'s namespace let it hear (Ingress) or reach (Egress) `peer`."""
    here = [p for p in policies if p["metadata"]["namespace"] == pod[0]]
    names = {ns: {"kubernetes.io/metadata.name": ns} for ns in (*WATCHED, NAMESPACE, OTHER)}
    return traffic_allowed(here, direction, pod, peer, (port, port_name), names)


def both_ways(
    policies: list[Manifest], client: Pod, server: Pod, port: int, name: str = ""
) -> bool:
    """A connection needs the client's egress and the server's ingress."""
    out = allowed(policies, "Egress", client, server, port, name)
    into = allowed(policies, "Ingress", server, client, port, name)
    assert out is not None, "a policy this evaluator cannot read"
    assert into is not None, "a policy this evaluator cannot read"
    return out and into


@pytest.fixture(scope="module")
def policies(helm: Helm) -> list[Manifest]:
    return find(helm.template(values=VALUES), "NetworkPolicy")


def test_finding_7_policies_are_on_by_default_and_can_be_turned_off(helm: Helm) -> None:
    names = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in find(
        helm.template(values=VALUES), "NetworkPolicy"
    )}  # fmt: skip
    expected = {
        (NAMESPACE, FULLNAME),
        (NAMESPACE, f"{FULLNAME}-store"),
        (NAMESPACE, f"{FULLNAME}-build"),
        *((ns, f"{FULLNAME}-{part}") for ns in WATCHED for part in ("triton", "router")),
    }
    assert names == expected
    assert not find(
        helm.template(values={**VALUES, "networkPolicy": {"enabled": False}}), "NetworkPolicy"
    )
    forced = helm.template(values={**VALUES, "networkPolicy": {"enabled": True}})
    assert len(find(forced, "NetworkPolicy")) == len(expected)
    error = helm.template_error(values={"networkPolicy": {"enabled": "yes"}})
    assert "networkPolicy.enabled" in error or "enabled" in error


ENGINE_SERVER_CASES = [
    ("triton pull init container, watched namespace", modelops_pod("ml", "triton"), True),
    ("source Job, watched namespace", modelops_pod("vision", "modelops-source"), True),
    ("validation Job, watched namespace", modelops_pod("ml", "modelops-validator"), True),
    ("build Job, release namespace", modelops_pod(NAMESPACE, "modelops-builder"), True),
    ("any pod of a watched namespace", other_pod("ml"), False),
    ("router pod", modelops_pod("ml", "modelops-router"), False),
    ("triton labels in an unwatched namespace", modelops_pod(OTHER, "triton"), False),
    ("builder labels forged in a tenant namespace", modelops_pod("ml", "modelops-builder"), False),
    ("the operator", OPERATOR, False),
]


@pytest.mark.parametrize(
    ("case", "client", "expected"), ENGINE_SERVER_CASES, ids=[c[0] for c in ENGINE_SERVER_CASES]
)
def test_finding_7_engine_server_admits_only_its_clients(
    policies: list[Manifest], case: str, client: Pod, expected: bool
) -> None:
    assert allowed(policies, "Ingress", SERVER, client, 8080, "http") is expected, case


OPERATOR_CASES = [
    ("router of a watched namespace", modelops_pod("ml", "modelops-router"), True),
    ("router labels in an unwatched namespace", modelops_pod(OTHER, "modelops-router"), False),
    (
        "router labels without managed-by",
        ("ml", {"app.kubernetes.io/name": "modelops-router"}),
        False,
    ),
    ("any pod of a watched namespace", other_pod("ml"), False),
    ("a Triton pod", modelops_pod("ml", "triton"), False),
]


@pytest.mark.parametrize(
    ("case", "client", "expected"), OPERATOR_CASES, ids=[c[0] for c in OPERATOR_CASES]
)
def test_finding_7_route_feed_admits_only_watched_routers(
    policies: list[Manifest], case: str, client: Pod, expected: bool
) -> None:
    """The old rule admitted a router label from any namespace (the finding's forgery)."""
    assert allowed(policies, "Ingress", OPERATOR, client, 8080, "http-metrics") is expected, case


TRITON_CASES = [
    ("own router, HTTP", modelops_pod("ml", "modelops-router"), 8000, True),
    ("own router, gRPC", modelops_pod("ml", "modelops-router"), 8001, True),
    ("validation Job, gRPC", modelops_pod("ml", "modelops-validator"), 8001, True),
    ("operator scraper, metrics", OPERATOR, 8002, True),
    ("operator, HTTP", OPERATOR, 8000, False),
    ("another namespace's router", modelops_pod("vision", "modelops-router"), 8000, False),
    ("a client pod of the same namespace", other_pod("ml"), 8000, False),
    ("a tenant pod elsewhere, gRPC", other_pod(OTHER), 8001, False),
    ("router labels forged elsewhere", modelops_pod(OTHER, "modelops-router"), 8000, False),
    ("operator labels forged in a tenant namespace", (OTHER, OPERATOR[1]), 8002, False),
    ("a tenant pod, metrics", other_pod("vision"), 8002, False),
]


@pytest.mark.parametrize(
    ("case", "client", "port", "expected"), TRITON_CASES, ids=[c[0] for c in TRITON_CASES]
)
def test_finding_7_triton_admits_only_router_validation_and_scraper(
    policies: list[Manifest], case: str, client: Pod, port: int, expected: bool
) -> None:
    triton = modelops_pod("ml", "triton")
    assert allowed(policies, "Ingress", triton, client, port) is expected, case


def test_finding_7_router_reaches_only_its_triton_and_the_route_feed(
    policies: list[Manifest],
) -> None:
    router = modelops_pod("ml", "modelops-router")
    assert both_ways(policies, router, modelops_pod("ml", "triton"), 8000)
    assert both_ways(policies, router, modelops_pod("ml", "triton"), 8001)
    assert both_ways(policies, router, OPERATOR, 8080, "http-metrics")
    assert not both_ways(policies, router, modelops_pod("vision", "triton"), 8000)
    assert not both_ways(policies, router, SERVER, 8080, "http")
    assert allowed(policies, "Egress", router, other_pod(OTHER), 8000) is False
    # Clients in (any, by default); the stats and agent ports only from the operator.
    assert allowed(policies, "Ingress", router, other_pod(OTHER), 8000) is True
    assert allowed(policies, "Ingress", router, other_pod(OTHER), 8404) is False
    assert allowed(policies, "Ingress", router, other_pod("ml"), 8405) is False
    assert allowed(policies, "Ingress", router, OPERATOR, 8405) is True


def test_finding_7_build_pods_reach_only_the_engine_server(policies: list[Manifest]) -> None:
    build = modelops_pod(NAMESPACE, "modelops-builder")
    assert both_ways(policies, build, SERVER, 8080, "http")
    assert allowed(policies, "Egress", build, ("kube-system", {"k8s-app": "kube-dns"}), 53) is True
    for target in (OPERATOR, modelops_pod("ml", "triton"), other_pod(OTHER)):
        assert allowed(policies, "Egress", build, target, 8080) is False
        assert allowed(policies, "Egress", build, target, 443) is False
    assert allowed(policies, "Ingress", build, OPERATOR, 8080) is False
    policy = one(policies, "NetworkPolicy", f"{FULLNAME}-build")
    assert not any(
        "ipBlock" in peer for rule in policy["spec"]["egress"] for peer in rule.get("to", [])
    )


def test_finding_7_build_pods_reach_an_s3_store(helm: Helm) -> None:
    s3 = {**VALUES, "store": {"s3": {"uri": "s3://bucket/engines", "secretName": "s3"}}}
    build = modelops_pod(NAMESPACE, "modelops-builder")
    rendered = find(helm.template(values=s3), "NetworkPolicy")
    assert allowed(rendered, "Egress", build, other_pod("anywhere"), 443) is True
    assert allowed(rendered, "Egress", build, other_pod("anywhere"), 80) is False


def test_finding_7_peer_values_open_only_their_ports(helm: Helm) -> None:
    prometheus: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    gateway: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}}
    }
    values = {**VALUES, "networkPolicy": {"metricsFrom": [prometheus], "servingFrom": [gateway],
                                          "clientsFrom": [gateway]}}  # fmt: skip
    rendered = find(helm.template(values=values), "NetworkPolicy")
    scraper: Pod = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
    envoy: Pod = ("gateways", {"app": "envoy"})

    def names(peer: Pod) -> dict[str, dict[str, str]]:
        return {peer[0]: {"kubernetes.io/metadata.name": peer[0]}}

    def hears(pod: Pod, peer: Pod, port: int, name: str = "") -> bool | None:
        here = [p for p in rendered if p["metadata"]["namespace"] == pod[0]]
        return traffic_allowed(here, "Ingress", pod, peer, (port, name), names(peer))

    triton, router = modelops_pod("ml", "triton"), modelops_pod("ml", "modelops-router")
    assert hears(triton, scraper, 8002)
    assert not hears(triton, scraper, 8000)
    assert hears(triton, envoy, 8001)
    assert not hears(triton, envoy, 8002)
    assert hears(router, envoy, 8000)
    assert not hears(router, other_pod(OTHER), 8000)
    assert hears(router, scraper, 8404)
    assert hears(OPERATOR, scraper, 8080, "http-metrics")
    assert hears(SERVER, scraper, 8080, "http")


def test_finding_7_cluster_wide_guards_the_release_namespace(helm: Helm) -> None:
    rendered = find(helm.template(values={"clusterWide": True}), "NetworkPolicy")
    assert {p["metadata"]["namespace"] for p in rendered} == {NAMESPACE}
    server = one(rendered, "NetworkPolicy", f"{FULLNAME}-store")
    peers = server["spec"]["ingress"][0]["from"]
    # Every namespace, but only the pods modelops renders (docs/security.md: the limit).
    assert all(peer["podSelector"]["matchLabels"].get("app.kubernetes.io/managed-by") == "modelops"
               for peer in peers)  # fmt: skip
