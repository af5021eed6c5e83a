"""decide/routing.py plan_traffic: the weights of a reconcile, and which revisions keep their
pods until the router runs a table that gives them 0."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import ModelDeployment, RolloutProgress
from modelops_operator.decide.facts import Facts, Lineage
from modelops_operator.decide.inputs import DecideContext, Observed
from modelops_operator.decide.lineage import Moved
from modelops_operator.decide.revisions import RevisionView
from modelops_operator.decide.routing import TrafficPlan, plan_traffic
from modelops_operator.decide.traffic import RouterReport
from tests.support.decide_world import FAST, SETTINGS, T0, body, spec

GATEWAY = {"parentRefs": [{"name": "public"}]}


def md_of(mode: str = "Router", traffic: dict[str, Any] | None = None) -> ModelDeployment:
    """A ModelDeployment in this traffic mode whose last status.traffic is `traffic`."""
    overrides: dict[str, Any] = {"rollout.traffic": {"mode": mode}}
    if mode == "GatewayAPI":
        overrides["rollout.traffic"] = {"mode": mode, "gatewayAPI": GATEWAY}
    md_body = body(spec(**overrides))
    md_body["status"] = {"traffic": traffic} if traffic else {}
    return ModelDeployment.from_body(md_body)


def view(number: int, replicas: int) -> RevisionView:
    """Revision `number` running `replicas` pods, all ready."""
    name = f"resnet-r{number}"
    return RevisionView(number, name, "k", "h", 1, "", replicas, replicas, True, {})


def facts_of(
    md: ModelDeployment,
    running: dict[int, int],
    router: RouterReport | None = None,
    observed: Observed | None = None,
) -> Facts:
    """Facts with these revisions (number -> replicas) and what the router reports."""
    return Facts(
        md=md,
        observed=observed or Observed(),
        context=DecideContext(T0, SETTINGS, router=router),
        now="now",
        key="k",
        serving_hash="h",
        retry_token="",
        revisions={n: view(n, r) for n, r in running.items()},
        pinned=None,
    )


def moved(
    current: int | None, candidate: int | None, weight: int, targets: dict[int, int] | None = None
) -> Moved:
    """A lineage after one step: the candidate's share of requests and the replica targets."""
    progress = RolloutProgress() if candidate is not None else None
    lineage = Lineage(current, candidate, None, (), progress)
    return Moved(lineage, targets=targets or {}, canary_weight=weight)


def traffic(version: int, weights: dict[int, int], mode: str = "Router") -> dict[str, Any]:
    """A status.traffic in wire form."""
    listed = [{"revision": n, "weight": w} for n, w in sorted(weights.items())]
    return {"mode": mode, "version": version, "weights": listed}


def runs(version: int) -> RouterReport:
    """Both router pods run `version`."""
    return RouterReport(pods=2, ready_pods=2, applied_versions=(version, version))


def weights_of(plan: TrafficPlan) -> dict[int, int]:
    return {w.revision: w.weight for w in plan.status.weights}


# --- plan_traffic ----------------------------------------------------------------------------
def test_replicas_mode_has_no_table_and_holds_nothing() -> None:
    md = md_of("Replicas", traffic(4, {1: 100}, "Router"))
    plan = plan_traffic(facts_of(md, {1: 2, 2: 2}), moved(1, 2, 50))
    assert plan.status.weights == []
    assert (plan.status.mode, plan.status.version) == ("Replicas", 4)
    assert (plan.synced, plan.events, plan.holds) == (True, (), frozenset())


def test_canary_step_shifts_traffic_with_one_event() -> None:
    md = md_of("Router", traffic(3, {1: 100, 2: 0}))
    plan = plan_traffic(facts_of(md, {1: 4, 2: 1}, runs(3)), moved(1, 2, 25))
    assert weights_of(plan) == {1: 75, 2: 25}
    assert plan.status.version == 4
    assert [(e.reason, e.message) for e in plan.events] == [
        ("TrafficShifted", "requests: revision 1 75%, revision 2 25%")
    ]
    assert plan.status.applied == "0/2 router pods run version 4"


def test_a_zero_weight_added_is_no_traffic_shift() -> None:
    """A new candidate listed at 0 changes the table but not who gets requests."""
    md = md_of("Router", traffic(3, {1: 100}))
    plan = plan_traffic(facts_of(md, {1: 4}, runs(3)), moved(1, 2, 0, {2: 1}))
    assert weights_of(plan) == {1: 100, 2: 0}
    assert plan.status.version == 4
    assert plan.events == ()


def test_rollback_of_a_first_revision_says_nobody_gets_requests() -> None:
    md = md_of("Router", traffic(2, {1: 100}))
    plan = plan_traffic(facts_of(md, {1: 2}, runs(2)), moved(None, None, 0))
    assert weights_of(plan) == {1: 0}
    assert [e.message for e in plan.events] == ["requests: none"]


HOLDS = [
    # (id, old table, router runs, lineage (current, candidate, weight), running, holds)
    ("synced-releases-zero", (5, {1: 0, 2: 100}), 5, (2, None, 0), {1: 2, 2: 2}, {2}),
    ("new-table-not-run-yet", (5, {1: 100, 2: 0}), 5, (2, None, 0), {1: 2, 2: 2}, {1, 2}),
    ("router-silent", (5, {1: 0, 2: 100}), None, (2, 3, 0), {1: 2, 2: 2, 3: 1}, {1, 2, 3}),
    ("router-behind-old", (5, {1: 0, 2: 100}), 4, (2, 3, 0), {1: 2, 2: 2, 3: 1}, {1, 2, 3}),
    ("old-table-gave-zero", (5, {1: 0, 2: 100}), 5, (2, 3, 0), {1: 2, 2: 2, 3: 1}, {2}),
    ("new-table-run", (5, {1: 100, 2: 0}), 6, (2, None, 0), {1: 2, 2: 2}, {2}),
]


@pytest.mark.parametrize(
    ("old", "router", "lineage", "running", "holds"),
    [c[1:] for c in HOLDS],
    ids=[c[0] for c in HOLDS],
)
def test_a_revision_keeps_its_pods_until_the_router_runs_a_table_giving_it_zero(
    old: tuple[int, dict[int, int]],
    router: int | None,
    lineage: tuple[int | None, int | None, int],
    running: dict[int, int],
    holds: set[int],
) -> None:
    md = md_of("Router", traffic(*old))
    report = runs(router) if router is not None else None
    plan = plan_traffic(facts_of(md, running, report), moved(*lineage))
    assert plan.holds == holds


def test_gateway_mode_releases_once_the_route_is_written() -> None:
    md = md_of("GatewayAPI", traffic(5, {1: 100, 2: 0}, "GatewayAPI"))
    plan = plan_traffic(facts_of(md, {1: 2, 2: 2}), moved(2, None, 0))
    assert plan.synced is True
    assert plan.holds == {2}
    assert plan.status.applied == "GatewayAPI mode"


@st.composite
def rollouts(draw: st.DrawFn) -> tuple[Facts, Moved, list[dict[int, int]]]:
    """A reconcile in Router mode, and the table each ready router pod may run."""
    numbers = st.integers(1, 6)
    old_weights = draw(st.dictionaries(numbers, st.sampled_from([0, 25, 50, 75, 100]), max_size=3))
    old_version = draw(st.integers(1, 9))
    running = draw(st.dictionaries(numbers, st.integers(1, 3), max_size=4))
    current, candidate = draw(st.one_of(st.none(), numbers)), draw(st.one_of(st.none(), numbers))
    weight = draw(st.sampled_from([0, 10, 50, 100])) if current is not None else 100
    if candidate == current:
        candidate = None
    step = moved(current, candidate, weight if candidate is not None else 0)
    md = md_of("Router", traffic(old_version, old_weights))
    new = plan_traffic(facts_of(md, running), step).status
    # Each ready router pod runs the new table, the old one, or an older one nobody knows.
    anyone = dict.fromkeys(range(1, 7), 100)
    choices = {
        "new": (new.version, {w.revision: w.weight for w in new.weights}),
        "old": (old_version, old_weights),
        "older": (old_version - 1, anyone),
    }
    pods = draw(st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=3))
    reporting = draw(st.integers(0, len(pods)))
    versions = tuple(choices[p][0] for p in pods[:reporting])
    report = RouterReport(pods=len(pods), ready_pods=len(pods), applied_versions=versions)
    # A pod that did not report may run anything.
    tables = [choices[p][1] if i < reporting else anyone for i, p in enumerate(pods)]
    return facts_of(md, running, report), step, tables


@FAST
@given(rollouts())
def test_holds_never_release_a_revision_the_router_still_sends_requests_to(
    case: tuple[Facts, Moved, list[dict[int, int]]],
) -> None:
    facts, step, tables = case
    plan = plan_traffic(facts, step)
    for number in weights_of(plan):
        if any(table.get(number, 0) > 0 for table in tables):
            assert number in plan.holds, (number, tables, plan)


@FAST
@given(rollouts())
def test_listed_weights_sum_to_100_or_nobody_serves(
    case: tuple[Facts, Moved, list[dict[int, int]]],
) -> None:
    facts, step, _ = case
    weights = weights_of(plan_traffic(facts, step))
    assert sum(weights.values()) in (0, 100)
    assert set(facts.revisions) <= set(weights)  # revisions with pods stay listed
    lineage = step.lineage
    for number, weight in weights.items():
        if number not in (lineage.current, lineage.candidate):
            assert weight == 0
