"""Finding 6 of issue 23: build Jobs are capped in all and per namespace, the others wait in a
queue fair between namespaces, and a queued build says so in status."""

from __future__ import annotations

import copy
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.decide.body import parse_body
from modelops_operator.decide.build_queue import (
    BuildLoad,
    Waiting,
    fair_order,
    queue_position,
    waiting_builds,
)
from modelops_operator.decide.inputs import DecideContext
from modelops_operator.decide.plan import Apply, Plan
from modelops_operator.decide.reconcile import reconcile
from tests.support.decide_world import SETTINGS, World, body, conds


def _w(namespace: str, name: str, minute: int) -> Waiting:
    return Waiting(f"2026-01-01T00:{minute:02d}:00Z", namespace, name)


def test_finding_6_the_queue_is_round_robin_between_namespaces() -> None:
    greedy = [_w("greedy", f"m{i}", i) for i in range(5)]
    late = _w("small", "only", 30)
    order = fair_order([*greedy, late])
    assert order[:3] == [greedy[0], late, greedy[1]]
    # one slot free: the greedy tenant's oldest build goes first, the small tenant's second
    load = BuildLoad({"x": 3}, (*greedy,))
    assert queue_position(late, load, max_total=4, max_per_namespace=2) == 2
    assert queue_position(greedy[0], load, max_total=4, max_per_namespace=2) is None
    # the greedy tenant at its own cap: the small tenant's build starts
    capped = BuildLoad({"greedy": 2}, (*greedy[2:],))
    assert queue_position(late, capped, max_total=4, max_per_namespace=2) is None
    assert queue_position(greedy[2], capped, max_total=4, max_per_namespace=2) == 1
    # no cap at all
    assert queue_position(late, BuildLoad({"greedy": 99}), 0, 0) is None


@given(
    st.dictionaries(st.sampled_from("abcd"), st.integers(0, 4)),
    st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 50)), max_size=12),
    st.integers(1, 6),
    st.integers(1, 3),
)
def test_finding_6_admitted_builds_never_exceed_either_cap(
    running: dict[str, int], queued: list[tuple[str, int]], total: int, per_namespace: int
) -> None:
    waiting = tuple(_w(ns, f"m{i}", minute) for i, (ns, minute) in enumerate(queued))
    load = BuildLoad(running, waiting)
    admitted = [w for w in waiting if queue_position(w, load, total, per_namespace) is None]
    assert len(admitted) <= max(0, total - sum(running.values()))
    for namespace in {ns for ns, _ in queued}:
        mine = sum(1 for w in admitted if w.namespace == namespace)
        assert running.get(namespace, 0) + mine <= max(per_namespace, running.get(namespace, 0))
    # positions are distinct places in one order
    positions = [queue_position(w, load, total, per_namespace) for w in waiting]
    placed = [p for p in positions if p is not None]
    assert len(placed) == len(set(placed))


def _decide(world: World, load: BuildLoad, **settings: int) -> Plan:
    conf = SETTINGS.model_copy(update=settings)
    ctx = DecideContext(world.now, conf, {}, False, router=world.router_report())
    observed = replace(world.observed(), build_load=load)
    return reconcile(parse_body(copy.deepcopy(world.body)), observed, ctx)


def _build_jobs(plan: Plan) -> list[str]:
    return [
        a.manifest["metadata"]["name"]
        for a in plan.actions
        if isinstance(a, Apply)
        and a.manifest["kind"] == "Job"
        and a.manifest["metadata"]["labels"].get("app.kubernetes.io/component") == "build"
    ]


def test_finding_6_a_build_over_the_caps_is_queued_and_says_its_position() -> None:
    world = World(body())
    full = BuildLoad({"other": 2}, (Waiting("2024-01-01T00:00:00Z", "other", "first"),))
    for _ in range(4):  # the source Job, its receipt, then the build
        plan = _decide(world, full, build_max_concurrent=2, build_max_per_namespace=2)
        assert not _build_jobs(plan)
        world.apply(plan)
        world.body["status"] = plan.status
    assert conds(plan.status)["EngineBuilt"] == ("False", "Queued")
    built = next(c for c in plan.status["conditions"] if c["type"] == "EngineBuilt")
    assert "position 2" in built["message"]
    assert waiting_builds([world.body]) == (Waiting(built["lastTransitionTime"], "ml", "resnet"),)
    # a slot frees: the build Job is created
    plan = _decide(world, BuildLoad({"other": 1}), build_max_concurrent=2)
    assert _build_jobs(plan)
