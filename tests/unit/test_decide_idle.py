"""Scale to zero's decision (decide/idle.py): a table, properties, and whole reconciles over World
(sleep only once the router holds, wake on demand, a rollout started while idle)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import IdleStatus, ModelDeploymentSpec
from modelops_operator.decide.body import parse_body
from modelops_operator.decide.idle import Activity, decide_idle
from modelops_operator.decide.inputs import DecideContext
from modelops_operator.decide.plan import Plan
from modelops_operator.decide.reconcile import reconcile
from tests.support.decide_world import FAST, SETTINGS, T0, World, body, reasons, spec

IDLE = 60
ZERO = {"minReplicas": 0, "maxReplicas": 4, "target": 5000, "idleSeconds": IDLE}
SPEC = ModelDeploymentSpec.model_validate(spec(scaling=ZERO))


def ago(seconds: float) -> datetime:
    return T0 - timedelta(seconds=seconds)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


ASLEEP = IdleStatus(since=stamp(ago(100)))

# (id, old status, activity, busy) -> (asleep, woke, event reasons)
CASES: list[tuple[str, IdleStatus | None, Activity, bool, bool, bool, list[str]]] = [
    ("never-read", None, Activity(), False, False, False, []),
    ("recent-request", None, Activity(last_request=ago(10)), False, False, False, []),
    ("quiet", None, Activity(last_request=ago(IDLE)), False, True, False, ["ScaledToZero"]),
    ("quiet-but-busy", None, Activity(last_request=ago(IDLE + 5)), True, False, False, []),
    (
        "quiet-but-held",
        None,
        Activity(last_request=ago(IDLE + 5), held_since=ago(1)),
        False,
        False,
        False,
        [],
    ),
    (
        "woke-recently",
        IdleStatus(woke_at=stamp(ago(10))),
        Activity(last_request=ago(IDLE + 5)),
        False,
        False,
        False,
        [],
    ),
    ("asleep-stays", ASLEEP, Activity(last_request=ago(100)), False, True, False, []),
    ("asleep-held", ASLEEP, Activity(held_since=ago(0.5)), False, False, True, []),
    ("asleep-rollout", ASLEEP, Activity(), True, False, True, []),
    (
        "served",
        IdleStatus(woke_at=stamp(ago(5))),
        Activity(last_request=T0, served=(4.2, 1.0)),
        False,
        False,
        False,
        ["WokeUp"],
    ),
    (
        "served-again",
        IdleStatus(woke_at=stamp(ago(5)), cold_start_seconds=4.2),
        Activity(last_request=T0, served=(0.3,)),
        False,
        False,
        False,
        [],
    ),
    (
        "timed-out",
        ASLEEP.model_copy(update={"since": None, "woke_at": stamp(ago(130))}),
        Activity(last_request=T0, timed_out=3),
        False,
        False,
        False,
        ["ColdStartTimedOut"],
    ),
]


@pytest.mark.parametrize(
    ("old", "activity", "busy", "asleep", "woke", "events"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_idle_table(
    old: IdleStatus | None,
    activity: Activity,
    busy: bool,
    asleep: bool,
    woke: bool,
    events: list[str],
) -> None:
    decision = decide_idle(SPEC, old, activity, 1, busy, T0)
    assert (decision.asleep, decision.woke) == (asleep, woke)
    assert [e.reason.value for e in decision.events] == events


def test_the_cold_start_is_the_longest_hold_and_the_wake_is_the_first_held_request() -> None:
    woke = decide_idle(SPEC, ASLEEP, Activity(held_since=ago(0.5)), 1, False, T0)
    assert woke.status is not None
    assert woke.status.woke_at == stamp(ago(0.5))
    served = decide_idle(SPEC, woke.status, Activity(served=(1.0, 4.25)), 1, False, T0)
    assert served.status is not None
    assert served.status.cold_start_seconds == 4.25
    assert "answered after 4.2 s" in served.events[0].message


def test_a_quiet_model_looks_again_when_it_would_become_idle() -> None:
    decision = decide_idle(SPEC, None, Activity(last_request=ago(IDLE - 12)), 1, False, T0)
    assert decision.requeue_after == pytest.approx(12)


@pytest.mark.parametrize("scaling", [{**ZERO, "minReplicas": 1}, None])
def test_without_min_replicas_0_nothing_sleeps(scaling: dict[str, Any] | None) -> None:
    model = ModelDeploymentSpec.model_validate(spec(scaling=scaling) if scaling else spec())
    decision = decide_idle(model, ASLEEP, Activity(last_request=ago(10_000)), 1, False, T0)
    assert not decision.asleep
    assert decision.status is None


moments = st.one_of(st.none(), st.floats(0, 10_000).map(ago))


@FAST
@given(
    asleep=st.booleans(),
    last=moments,
    held=moments,
    woke=moments,
    busy=st.booleans(),
)
def test_never_asleep_while_busy_held_or_unknown(
    asleep: bool, last: datetime | None, held: datetime | None, woke: datetime | None, busy: bool
) -> None:
    old = IdleStatus(
        since=stamp(ago(20_000)) if asleep else None, woke_at=stamp(woke) if woke else None
    )
    decision = decide_idle(SPEC, old, Activity(last_request=last, held_since=held), 1, busy, T0)
    if busy or held is not None:
        assert not decision.asleep
    if decision.asleep and not asleep:
        assert last is not None
        assert (T0 - last).total_seconds() >= IDLE
        assert woke is None or (T0 - woke).total_seconds() >= IDLE - 1
        assert [e.reason.value for e in decision.events][-1] == "ScaledToZero"
    if asleep and not decision.asleep:
        assert decision.woke


# --- whole reconciles -------------------------------------------------------------------------


def look(world: World, activity: Activity | None = None) -> Plan:
    """One reconcile with the router's activity, applied."""
    ctx = DecideContext(
        world.now, SETTINGS, router=world.router_report(), activity=activity or Activity()
    )
    plan = reconcile(parse_body(copy.deepcopy(world.body)), world.observed(), ctx)
    world.apply(plan)
    world.body["status"] = plan.status
    world.plans.append(plan)
    return plan


def weights(world: World) -> dict[int, int]:
    return {w["revision"]: w["weight"] for w in world.status()["traffic"]["weights"]}


def sleeping_world() -> World:
    """A Ready minReplicas-0 model that went idle and runs no pod."""
    world = World(body(spec(scaling=ZERO)))
    world.serve()
    assert world.replicas() == {"resnet-r1": 1}
    world.tick(IDLE + 1)
    quiet = Activity(last_request=world.now - timedelta(seconds=IDLE + 1))
    world.router_follows = False  # the router has not applied the new table yet
    plan = look(world, quiet)
    assert "ScaledToZero" in reasons(plan)
    assert weights(world) == {1: 0}
    assert world.status()["traffic"]["holdSeconds"] == 120
    assert world.replicas() == {"resnet-r1": 1}, "pods stay until the router holds"
    world.router_follows = True
    look(world, quiet)
    assert world.replicas() == {"resnet-r1": 0}
    world.settle()
    look(world, quiet)
    return world


def test_idle_sleeps_once_the_router_holds_and_shows_idle_0_of_0() -> None:
    world = sleeping_world()
    status = world.status()
    assert (status["phase"], status["ready"]) == ("Idle", "0/0")
    assert weights(world) == {}
    assert world.condition("ScaledToZero")["status"] == "True"
    assert world.condition("Ready")["status"] == "True"
    assert world.condition("Degraded")["status"] == "False"


def test_a_held_request_wakes_it_and_it_gets_weight_only_with_a_ready_pod() -> None:
    world = sleeping_world()
    world.tick(5)
    version = world.status()["traffic"]["version"]
    plan = look(world, Activity(held_since=world.now, last_request=world.now))
    assert world.replicas() == {"resnet-r1": 1}
    assert any("0 -> 1 replicas: a request is waiting" in e.message for e in plan.events)
    assert weights(world) == {}, "no weight before a pod is Ready: the router holds"
    assert world.status()["traffic"]["version"] == version, "the wake writes no new table"
    assert [a.manifest["kind"] for a in plan.changes] == ["Deployment"]
    assert world.status()["phase"] == "Idle"
    world.settle()
    look(world, Activity(last_request=world.now))
    assert weights(world) == {1: 100}
    plan = look(world, Activity(last_request=world.now, served=(3.5,)))
    assert world.status()["phase"] == "Ready"
    assert world.status()["idle"]["coldStartSeconds"] == 3.5
    assert "WokeUp" in reasons(plan)


def test_a_rollout_started_while_idle_starts_the_candidate_at_one_pod() -> None:
    world = sleeping_world()
    world.body["spec"]["model"]["source"]["sha256"] = "cd" * 32
    world.body["metadata"]["generation"] += 1
    world.start_build()
    world.finish_build()
    look(world)
    assert world.replicas()["resnet-r2"] == 1
    assert world.status()["revision"]["candidate"] == 2
    # nothing sleeps while the rollout runs, however quiet; it ends by its validation run
    quiet_since = world.now - timedelta(seconds=10 * IDLE)
    for _ in range(8):
        world.tick(11)
        world.settle()
        rolling = world.status()["revision"]["candidate"] is not None
        plan = look(world, Activity(last_request=quiet_since))
        assert not rolling or "ScaledToZero" not in reasons(plan)
        if world.status()["revision"]["current"] == 2:
            break
    assert world.status()["revision"]["current"] == 2
    assert world.replicas()["resnet-r2"] >= 1
