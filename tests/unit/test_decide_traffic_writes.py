"""decide/routing.py traffic_writes: the router, Services and routes of each traffic mode, and
the leftovers of another mode deleted."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from modelops_operator.decide.facts import observe_keys
from modelops_operator.decide.inputs import Observed
from modelops_operator.decide.plan import Action, Apply, Delete
from modelops_operator.decide.routing import plan_traffic, traffic_writes
from modelops_operator.decide.writes import with_applied_hash
from modelops_operator.render.router import router_selector
from modelops_operator.render.service import service_ports, service_selector
from tests.support.decide_world import SETTINGS
from tests.unit.test_decide_routing import facts_of, md_of, moved, runs, traffic


# --- traffic_writes --------------------------------------------------------------------------
def writes(mode: str, observed: Observed, status_weights: dict[int, int]) -> list[Action]:
    md = md_of(mode, traffic(3, status_weights, mode))
    facts = facts_of(md, dict.fromkeys(status_weights, 2), runs(3), observed)
    plan = plan_traffic(facts, moved(1, 2 if 2 in status_weights else None, 50))
    return traffic_writes(facts, plan, serving=True)


def kinds(actions: list[Action]) -> list[tuple[str, str, str]]:
    """(verb, kind, name) of each write."""
    return [
        ("apply", a.manifest["kind"], a.manifest["metadata"]["name"])
        if isinstance(a, Apply)
        else ("delete", a.kind, a.name)
        for a in actions
        if isinstance(a, Apply | Delete)
    ]


def applied(actions: list[Action]) -> Observed:
    """What the cluster holds after these writes (from nothing)."""
    stored = {}
    for action in actions:
        if isinstance(action, Apply):
            manifest, _ = with_applied_hash(copy.deepcopy(action.manifest))
            stored[f"{manifest['kind']}/{manifest['metadata']['name']}"] = manifest
    return Observed(
        services={k.split("/")[1]: v for k, v in stored.items() if k.startswith("Service/")},
        service=stored.get("Service/resnet"),
        router=stored.get("Deployment/resnet-router"),
        router_config=stored.get("ConfigMap/resnet-router"),
        routes={k: v for k, v in stored.items() if "Route/" in k},
    )


ROUTER: dict[str, Any] = {"metadata": {"name": "resnet-router"}, "status": {"readyReplicas": 2}}
ROUTER_CONFIG: dict[str, Any] = {"metadata": {"name": "resnet-router"}}
ROUTES: dict[str, dict[str, Any]] = {
    "HTTPRoute/resnet": {"kind": "HTTPRoute"},
    "GRPCRoute/resnet": {"kind": "GRPCRoute"},
}


def test_nothing_to_route_before_revisions_exist() -> None:
    md = md_of("Router")
    facts = facts_of(md, {})
    assert traffic_writes(facts, plan_traffic(facts, moved(None, None, 0)), serving=False) == []


def test_router_mode_writes_services_router_and_the_service_selects_the_router_from_creation() -> (
    None
):
    actions = writes("Router", Observed(), {1: 50, 2: 50})
    assert kinds(actions) == [
        ("apply", "Service", "resnet-r1"),
        ("apply", "Service", "resnet-r2"),
        ("apply", "ConfigMap", "resnet-router"),
        ("apply", "Deployment", "resnet-router"),
        ("apply", "Service", "resnet"),
    ]
    service = next(a.manifest for a in actions if isinstance(a, Apply))
    assert service["spec"]["selector"]["modelops.dev/revision"] == "1"
    own = [a.manifest for a in actions if isinstance(a, Apply)][-1]
    # Never the Triton pods: a connection opened there would stay on one pod for its life.
    assert own["spec"]["selector"] == router_selector("resnet")
    assert "annotations" not in own["metadata"]


@pytest.mark.parametrize("mode", ["Router", "GatewayAPI", "Replicas"])
def test_writes_are_idempotent(mode: str) -> None:
    first = writes(mode, Observed(), {1: 50, 2: 50})
    assert writes(mode, applied(first), {1: 50, 2: 50}) == []


ROUTER_POD: dict[str, Any] = {
    "metadata": {"name": "resnet-router-0"},
    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
}


def test_a_switch_to_router_mode_moves_the_service_once_the_router_serves() -> None:
    """A Service that selects Triton pods (another mode before) keeps them until a router pod
    is Ready and runs the table (`runs(3)` in `writes`), then moves, recording the moment."""
    observed = applied(writes("Router", Observed(), {1: 100}))
    assert observed.service is not None
    triton = copy.deepcopy(observed.service)
    triton["spec"]["selector"] = service_selector("resnet")
    before = writes("Router", replace(observed, service=triton), {1: 100})
    assert kinds(before) == []
    ready = replace(observed, service=triton, router_pods=(ROUTER_POD,))
    actions = writes("Router", ready, {1: 100})
    assert kinds(actions) == [("apply", "Service", "resnet")]
    assert isinstance(actions[0], Apply)
    assert actions[0].manifest["spec"]["selector"] == router_selector("resnet")
    annotations = actions[0].manifest["metadata"]["annotations"]
    assert annotations == {"modelops.dev/selects-router-since": "now"}


def test_router_mode_deletes_leftover_routes() -> None:
    actions = writes("Router", Observed(routes=ROUTES), {1: 100})
    deletes = [a for a in actions if isinstance(a, Delete)]
    assert {(d.api_version, d.kind, d.name) for d in deletes} == {
        ("gateway.networking.k8s.io/v1", "HTTPRoute", "resnet"),
        ("gateway.networking.k8s.io/v1", "GRPCRoute", "resnet"),
    }


def test_gateway_mode_writes_weighted_routes_and_deletes_the_router() -> None:
    observed = Observed(router=ROUTER, router_config=ROUTER_CONFIG)
    actions = writes("GatewayAPI", observed, {1: 50, 2: 50})
    assert ("delete", "Deployment", "resnet-router") in kinds(actions)
    assert ("delete", "ConfigMap", "resnet-router") in kinds(actions)
    routes = [a.manifest for a in actions if isinstance(a, Apply) and "Route" in a.manifest["kind"]]
    assert [r["kind"] for r in routes] == ["HTTPRoute", "GRPCRoute"]
    for route in routes:
        backends = route["spec"]["rules"][0]["backendRefs"]
        assert [(b["name"], b["weight"]) for b in backends] == [
            ("resnet-r1", 50),
            ("resnet-r2", 50),
        ]
        assert route["spec"]["parentRefs"] == [{"name": "public"}]


def test_replicas_mode_removes_every_piece_of_the_other_modes() -> None:
    observed = Observed(
        router=ROUTER,
        router_config=ROUTER_CONFIG,
        routes=ROUTES,
        services={"resnet-r1": {}, "resnet-r2": {}, "resnet": {}},
    )
    actions = writes("Replicas", observed, {1: 50, 2: 50})
    assert sorted(k for k in kinds(actions) if k[0] == "delete") == [
        ("delete", "ConfigMap", "resnet-router"),
        ("delete", "Deployment", "resnet-router"),
        ("delete", "GRPCRoute", "resnet"),
        ("delete", "HTTPRoute", "resnet"),
        ("delete", "Service", "resnet-r1"),
        ("delete", "Service", "resnet-r2"),
    ]
    own = next(a.manifest for a in actions if isinstance(a, Apply))
    assert own["spec"]["selector"] == service_selector("resnet")


def test_a_lone_router_configmap_is_deleted_too() -> None:
    observed = Observed(router_config=ROUTER_CONFIG)
    assert ("delete", "ConfigMap", "resnet-router") in kinds(writes("Replicas", observed, {1: 100}))


@pytest.mark.parametrize("mode", ["Replicas", "GatewayAPI"])
def test_the_service_leaves_the_router_before_the_router_goes(mode: str) -> None:
    observed = Observed(
        router=ROUTER,
        router_config=ROUTER_CONFIG,
        service={"spec": {"selector": router_selector("resnet"), "ports": service_ports()}},
    )
    order = kinds(writes(mode, observed, {1: 100}))
    assert order.index(("apply", "Service", "resnet")) < order.index(
        ("delete", "Deployment", "resnet-router")
    )


def test_routes_are_read_while_the_last_mode_was_gateway_api() -> None:
    md = md_of("Router", traffic(3, {1: 100}, "GatewayAPI"))
    assert observe_keys(md, SETTINGS).gateway is True
