"""How requests reach the revisions: the weights, and the router, Services and routes that carry
them, in the ModelDeployment's traffic mode.

- Router: a revision Service per revision, the router's ConfigMap (with the route table) and
  Deployment; the ModelDeployment's Service selects the router's pods from its creation, and
  Ready waits until clients reach the model through them (`router_gate.py`).
- GatewayAPI: a revision Service per revision, and an HTTPRoute and a GRPCRoute with weights.
- Replicas: the Service selects every revision's Triton pods; nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api import ConditionType, TrafficMode, TrafficStatus, find_condition
from ..render.gateway import render_routes
from ..render.names import revision_name, router_name
from ..render.router import (
    render_revision_service,
    render_router_configmap,
    render_router_deployment,
    router_selector,
)
from ..render.service import render_service
from .facts import Facts
from .idle import scales_to_zero
from .lineage import Moved
from .plan import Action, Apply, Delete, Emit, EventReason
from .router_gate import (
    ANNOTATION_SELECTS_ROUTER_SINCE,
    OPEN,
    Gate,
    gate,
    router_serves,
    selects_router,
    wanted_selector,
)
from .traffic import (
    RouterReport,
    applied_note,
    next_status,
    route_table,
    router_synced,
    split,
    with_draining,
)
from .writes import unchanged


@dataclass(frozen=True)
class TrafficPlan:
    """The new status.traffic, whether the router runs it, and revisions it still needs."""

    status: TrafficStatus
    synced: bool
    events: tuple[Emit, ...]
    holds: frozenset[int]
    gate: Gate = OPEN


def _running(facts: Facts, targets: Mapping[int, int]) -> list[int]:
    """Revisions with pods now or after this reconcile."""
    return sorted(
        {n for n, view in facts.revisions.items() if view.replicas > 0}
        | {n for n, target in targets.items() if target > 0}
    )


def _describe(weights: Mapping[int, int]) -> str:
    return ", ".join(f"revision {n} {w}%" for n, w in sorted(weights.items()) if w > 0) or "none"


def plan_traffic(facts: Facts, moved: Moved) -> TrafficPlan:
    """Weights of this reconcile: the candidate's share, the rest to the current revision, 0 to
    revisions that still run pods."""
    mode = facts.md.spec.rollout.traffic.mode
    old = facts.md.status.traffic
    lineage = moved.lineage
    report = facts.context.router
    if mode == TrafficMode.REPLICAS:
        status = TrafficStatus(mode=mode, version=old.version if old else 0, applied=None)
        return TrafficPlan(status, True, (), frozenset())
    serving = split(lineage.current, lineage.candidate, moved.canary_weight)
    running = _running(facts, moved.targets)
    if dormant(facts, moved):
        # Scale to zero: the router holds its requests; it stays in the table (weight 0) only
        # while it has pods to drain, so a wake changes no table before its pod is Ready.
        serving = {}
        view = facts.revisions.get(lineage.current) if lineage.current is not None else None
        running = [n for n in running if n != lineage.current or (view and view.replicas > 0)]
    weights = with_draining(serving, running)
    status = next_status(mode, old, weights, None, hold_seconds(facts))
    synced = router_synced(mode, status, report)
    status = status.model_copy(update={"applied": applied_note(mode, status, report)})
    events: tuple[Emit, ...] = ()
    before = {w.revision: w.weight for w in old.weights} if old else {}
    if {n: w for n, w in before.items() if w} != {n: w for n, w in weights.items() if w}:
        events = (Emit(EventReason.TRAFFIC_SHIFTED, f"requests: {_describe(weights)}"),)
    holds = _holds(weights, before, synced, old, report)
    return TrafficPlan(
        status, synced, events, holds, _gate(facts, status) if weights else Gate(None)
    )


def _gate(facts: Facts, status: TrafficStatus) -> Gate:
    """Router mode: whether clients reach the model through the router yet (Ready waits)."""
    if facts.md.spec.rollout.traffic.mode != TrafficMode.ROUTER:
        return OPEN
    ready = find_condition(facts.md.status.conditions, ConditionType.READY)
    was_ready = (
        ready is not None
        and ready.status == "True"
        and facts.md.status.traffic is not None
        and facts.md.status.traffic.mode == TrafficMode.ROUTER
    )
    return gate(
        md_name=facts.name,
        service=facts.observed.service,
        pods=facts.observed.router_pods,
        report=facts.context.router,
        status=status,
        now=facts.context.now,
        settle_seconds=facts.settings.drain_seconds,
        was_ready=was_ready,
    )


def hold_seconds(facts: Facts) -> int:
    """How long the router holds a request no revision can take: coldStartTimeoutSeconds with
    scale to zero, else 0 (503 at once, as before)."""
    scaling = facts.md.spec.scaling
    if not scales_to_zero(facts.md.spec) or scaling is None:
        return 0
    return scaling.cold_start_timeout_seconds


def dormant(facts: Facts, moved: Moved) -> bool:
    """Scale to zero: the serving revision has no ready pod, or goes to 0 now. It gets no
    weight; the router holds its requests until a pod is Ready (a gRPC call sent to a Service
    without endpoints would fail, and HTTP health checks take a second to notice)."""
    lineage = moved.lineage
    if not scales_to_zero(facts.md.spec) or lineage.candidate is not None:
        return False
    if lineage.current is None:
        return False
    view = facts.revisions.get(lineage.current)
    return moved.targets.get(lineage.current, 0) == 0 or view is None or view.ready == 0


def _holds(
    weights: Mapping[int, int],
    before: Mapping[int, int],
    synced: bool,
    old: TrafficStatus | None,
    report: RouterReport | None,
) -> frozenset[int]:
    """Revisions that keep their pods: a revision leaves only once the router runs a table
    that gives it nothing (the new one, or the previous one when that already did)."""
    if synced:
        return frozenset(n for n, w in weights.items() if w > 0)
    if old is not None and report is not None and report.runs(old.version):
        return frozenset(n for n in weights if weights[n] > 0 or before.get(n, 0) > 0)
    return frozenset(weights)


def _write(existing: Mapping[str, Any] | None, manifest: dict[str, Any]) -> list[Action]:
    return [] if unchanged(existing, manifest) else [Apply(manifest)]


def traffic_writes(facts: Facts, plan: TrafficPlan, serving: bool) -> list[Action]:
    """The router, Services and routes of the mode; leftovers of another mode deleted.

    `serving` says revisions exist (or are being created): before that there is nothing to
    route, and no router runs for a ModelDeployment that is still building.
    """
    md, observed = facts.md, facts.observed
    mode = md.spec.rollout.traffic.mode
    actions: list[Action] = []
    if not serving:
        return actions
    routed = [w.revision for w in plan.status.weights]
    if mode != TrafficMode.REPLICAS:
        for number in routed:
            service = render_revision_service(md, number)
            actions += _write(observed.services.get(service["metadata"]["name"]), service)
    if mode == TrafficMode.ROUTER:
        table = route_table(facts.name, md.metadata.namespace, plan.status)
        actions += _write(observed.router_config, render_router_configmap(md, table))
        actions += _write(observed.router, render_router_deployment(md, facts.settings))
    gateway = md.spec.rollout.traffic.gateway_api
    if mode == TrafficMode.GATEWAY_API and gateway is not None:
        weights = {w.revision: w.weight for w in plan.status.weights}
        for route in render_routes(md, gateway, weights):
            key = f"{route['kind']}/{route['metadata']['name']}"
            actions += _write(observed.routes.get(key), route)
    # The Service moves before anything it may select goes: a plan stops at its first failed
    # write, and must never leave the Service on deleted router pods.
    actions += _service_write(facts, plan.status)
    return actions + _leftovers(facts)


def _service_write(facts: Facts, status: TrafficStatus) -> list[Action]:
    """The Service `<name>`: the router's pods in Router mode (router_gate.py), else every
    revision's Triton pods; the moment it starts selecting the router is recorded on it."""
    service = facts.observed.service
    serves = router_serves(facts.observed.router_pods, facts.context.router, status)
    selector = wanted_selector(facts.md.spec.rollout.traffic.mode, facts.name, service, serves)
    annotations = None
    switching = service is not None and not selects_router(service, facts.name)
    if selector == router_selector(facts.name) and switching:
        annotations = {ANNOTATION_SELECTS_ROUTER_SINCE: facts.now}
    wanted = render_service(facts.md, selector, annotations)
    have = (service or {}).get("spec") or {}
    if any(have.get(part) != wanted["spec"][part] for part in ("selector", "ports")):
        return [Apply(wanted)]
    return []


def _leftovers(facts: Facts) -> list[Action]:
    """Objects of another traffic mode: the router, the routes, the revision Services."""
    md, observed = facts.md, facts.observed
    mode = md.spec.rollout.traffic.mode
    actions: list[Action] = []
    if mode != TrafficMode.ROUTER:
        if observed.router is not None:
            actions.append(Delete("apps/v1", "Deployment", router_name(facts.name)))
        if observed.router_config is not None:
            actions.append(Delete("v1", "ConfigMap", router_name(facts.name)))
    if mode != TrafficMode.GATEWAY_API or md.spec.rollout.traffic.gateway_api is None:
        actions += [
            Delete(*_route_ref(route), name) for name, route in _named_routes(observed.routes)
        ]
    if mode == TrafficMode.REPLICAS:
        actions += [
            Delete("v1", "Service", name)
            for name in sorted(observed.services)
            if any(name == revision_name(facts.name, n) for n in facts.revisions)
        ]
    return actions


def _named_routes(routes: Mapping[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(key.split("/", 1)[1], route) for key, route in sorted(routes.items())]


def _route_ref(route: Mapping[str, Any]) -> tuple[str, str]:
    return "gateway.networking.k8s.io/v1", str(route.get("kind", "HTTPRoute"))
