"""Steering annotations in the operator's decision: promote, abort, pause, a manual weight."""

from __future__ import annotations

import re

import pytest

from modelops_operator.api import ModelDeployment
from modelops_operator.decide.steering import Steering, read_steering, steered_steps
from modelops_operator.decide.steering_rules import Refusal, Request, Steer, Verb, steer
from modelops_operator.render.names import revision_of
from tests.support.decide_world import World, analysis, body, change, conds, reasons, spec


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, Steering()),
        ({"modelops.dev/promote": "2"}, Steering(promote=2)),
        ({"modelops.dev/promote": " 2 "}, Steering(promote=2)),
        ({"modelops.dev/abort": "two"}, Steering()),
        ({"modelops.dev/abort": "-2"}, Steering()),
        ({"modelops.dev/abort": "9" * 10}, Steering()),
        ({"modelops.dev/pause": "3"}, Steering(pause=3)),
        ({"modelops.dev/weight": "3:40"}, Steering(weight=(3, 40))),
        ({"modelops.dev/weight": "3:0"}, Steering(weight=(3, 0))),
        ({"modelops.dev/weight": "3:100"}, Steering(weight=(3, 100))),
        ({"modelops.dev/weight": "3:101"}, Steering()),
        ({"modelops.dev/weight": "3"}, Steering()),
        ({"modelops.dev/weight": ":40"}, Steering()),
        ({"modelops.dev/weight": "3:40:1"}, Steering()),
    ],
)
def test_read_steering(annotations: dict[str, str], expected: Steering) -> None:
    assert read_steering(annotations) == expected


@pytest.mark.parametrize(
    ("steps", "step", "weight", "expected"),
    [
        ([25, 50, 100], 0, None, [25, 50, 100]),
        ([25, 50, 100], 0, 75, [75, 50, 100]),
        ([25, 50, 100], 1, 10, [25, 10, 100]),
        ([25, 50, 100], 7, 10, [25, 50, 10]),
        ([100], 0, 40, [40]),
    ],
)
def test_steered_steps(
    steps: list[int], step: int, weight: int | None, expected: list[int]
) -> None:
    assert steered_steps(steps, step, weight) == expected


def canary(replicas: int = 4, steps: list[int] | None = None) -> World:
    """Revision 1 serves; revision 2's first step is ready and validated (25% by default)."""
    world = World(body(spec(**{"serving.replicas": replicas})))
    world.serve()
    world.body["spec"]["rollout"]["canary"]["steps"] = steps or [25, 50, 100]
    change(world, **{"serving.instancesPerReplica": 2})
    world.step()
    world.settle()
    world.step()  # the validation run
    world.step()  # validated
    world.settle()
    assert world.status()["rollout"]["validated"] is True
    assert world.status()["revision"]["candidate"] == 2
    return world


def annotate(world: World, **values: str | None) -> None:
    """Set (or with None remove) `modelops.dev/<name>` annotations."""
    meta = world.body["metadata"].setdefault("annotations", {})
    for name, value in values.items():
        key = f"modelops.dev/{name.replace('_', '-')}"
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value


def weights(world: World) -> dict[int, int]:
    """status.traffic as revision -> weight."""
    return {w["revision"]: w["weight"] for w in world.status()["traffic"]["weights"]}


def test_abort_rolls_the_candidate_back_and_retry_starts_a_new_attempt() -> None:
    world = canary()
    annotate(world, pause="2")
    world.step()
    annotate(world, abort="2", pause=None)  # what `kubectl modelops abort` writes
    plan = world.step()
    assert reasons(plan)[0] == "RolledBack"
    assert "RolloutSteered" not in reasons(plan)
    assert "aborted by modelops.dev/abort" in plan.events[0].message
    assert plan.status["phase"] == "RolledBack"
    assert conds(plan.status)["Degraded"] == ("True", "Aborted")
    entry = next(h for h in plan.status["history"] if h["revision"] == 2)
    assert (entry["state"], entry["reason"]) == (
        "RolledBack",
        "Aborted: aborted by modelops.dev/abort",
    )
    assert weights(world) == {1: 100, 2: 0}
    assert world.replicas()["resnet-r1"] == 4
    world.settle()
    world.step()
    world.settle()
    world.step()
    assert world.replicas() == {"resnet-r1": 4, "resnet-r2": 0}
    # The generation stays rolled back: the same attempt is not started again.
    world.tick(60)
    assert world.step().status["revision"].get("candidate") is None
    annotate(world, retry="1")
    plan = world.step()
    assert reasons(plan) == ["RevisionCreated"]
    assert plan.status["revision"] == {"current": 1, "candidate": 3}


def test_abort_naming_another_revision_changes_nothing() -> None:
    world = canary()
    annotate(world, abort="1")
    plan = world.step()
    assert "RolledBack" not in reasons(plan)
    assert plan.status["revision"]["candidate"] == 2


def test_promote_skips_the_remaining_steps_once_ready() -> None:
    world = canary()
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 1}
    annotate(world, promote="2")
    plan = world.step()
    assert reasons(plan)[0] == "RolloutSteered"
    assert "promote requested (modelops.dev/promote)" in plan.events[0].message
    # One 100% step: the candidate scales to all replicas first, the old keeps its pods.
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 4}
    assert plan.status["phase"] == "RollingOut"
    world.settle()
    plan = world.step()
    assert "RolledOut" in reasons(plan)
    assert "StepPromoted" not in [r for p in world.plans for r in reasons(p)]
    assert plan.status["revision"]["current"] == 2
    assert weights(world) == {1: 0, 2: 100}
    # Each revision records its engine's signature digest (the same I/O here).
    signatures = {h["revision"]: h["signature"] for h in plan.status["history"]}
    assert signatures[1] == signatures[2]
    assert re.fullmatch(r"[0-9a-f]{12}", signatures[1])


def test_promote_naming_another_revision_keeps_the_steps() -> None:
    world = canary()
    annotate(world, promote="3")
    world.step()
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 1}


def test_pause_holds_the_step_and_resume_goes_on() -> None:
    world = canary()
    annotate(world, pause="2")
    world.tick(100)
    plan = world.step()
    assert reasons(plan) == ["RolloutSteered"]  # once, not on every look
    assert plan.events[0].message == "revision 2: paused (modelops.dev/pause)"
    assert plan.status["rollout"]["step"] == 0
    assert plan.status["rollout"]["steered"] == "paused (modelops.dev/pause)"
    assert "paused (modelops.dev/pause)" in world.condition("RolledOut")["message"]
    assert plan.requeue_after == pytest.approx(10.0)
    world.tick(100)
    assert reasons(world.step()) == []
    annotate(world, pause=None)
    plan = world.step()
    assert reasons(plan) == ["RolloutSteered", "StepPromoted"]
    assert plan.events[0].message == "revision 2: resumed"


def test_paused_canary_still_rolls_back_on_failed_analyses() -> None:
    world = canary()
    annotate(world, pause="2")
    world.step({2: analysis("fail", "errorRate 0.2 > maxErrorRate 0.01")}, enabled=True)
    plan = world.step({2: analysis("fail", "errorRate 0.3 > maxErrorRate 0.01")}, enabled=True)
    assert reasons(plan)[0] == "RolledBack"


def test_promote_overrides_a_pause() -> None:
    world = canary()
    annotate(world, pause="2", promote="2")
    world.step()
    world.settle()
    assert "RolledOut" in reasons(world.step())


def test_manual_weight_sets_replicas_and_requests_and_holds() -> None:
    world = canary()
    annotate(world, weight="2:75")
    world.step()
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 3}
    world.settle()
    plan = world.step()
    assert weights(world) == {1: 25, 2: 75}
    world.settle()
    world.tick(100)
    plan = world.step()
    assert reasons(plan) == []  # the RolloutSteered Event came with the first look
    assert [r for p in world.plans for r in reasons(p)].count("RolloutSteered") == 1
    assert world.replicas() == {"resnet-r1": 1, "resnet-r2": 3}
    assert "manual weight (modelops.dev/weight)" in world.condition("RolledOut")["message"]
    # Without the weight, the step's own share comes back, and the step goes on.
    annotate(world, weight=None)
    world.tick(10)
    seen: list[str] = []
    for _ in range(3):
        seen += reasons(world.step())
        world.settle()  # the Deployment controller sees each new replica count
    assert seen[:2] == ["RolloutSteered", "TrafficShifted"]
    assert "StepPromoted" in seen
    assert world.status()["rollout"]["step"] == 1


def test_manual_weight_is_ignored_by_an_immediate_rollout() -> None:
    world = World(body(spec(**{"rollout.strategy": "Recreate", "serving.replicas": 3})))
    world.serve()
    change(world, **{"serving.instancesPerReplica": 2})
    annotate(world, weight="2:10", pause="2")
    assert "RolloutSteered" not in reasons(world.step())
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 3}
    world.settle()
    world.step()
    assert "RolledOut" in reasons(world.step())


# --- which request makes sense when (decide/steering_rules.py) -------------------------------
def ask(world: World, verb: str, number: int | None = None) -> Steer | Refusal:
    """What `kubectl modelops VERB` would write for the world's ModelDeployment as it stands."""
    md = ModelDeployment.from_body(world.body)
    found = (revision_of(n) for n in world.deployments)
    existing = frozenset(n for n in found if n is not None)
    return steer(md, Request(Verb(verb), number, token="t1"), existing)


def refused(world: World, verb: str, number: int | None = None) -> str:
    answer = ask(world, verb, number)
    assert isinstance(answer, Refusal), answer
    return answer.reason


def ready_world() -> World:
    world = World(body(spec(**{"serving.replicas": 4})))
    world.serve()
    return world


@pytest.mark.parametrize(
    ("verb", "number", "expected"),
    [
        ("promote", None, "nothing to promote: no revision of resnet is rolling out (phase Ready)"),
        ("abort", None, "nothing to abort: no revision of resnet is rolling out (phase Ready)"),
        ("pause", None, "nothing to pause"),
        ("resume", None, "nothing to resume"),
        ("set-weight", 40, "nothing to set-weight"),
        ("retry", None, "nothing to retry: generation 1 of resnet has no failed build"),
        ("rollback-to", 1, "revision 1 is what serves now"),
        ("rollback-to", 7, "revision 7 cannot serve again; revisions that served and still"),
    ],
)
def test_refusals_when_ready(verb: str, number: int | None, expected: str) -> None:
    assert expected in refused(ready_world(), verb, number)


def test_refusals_during_a_canary() -> None:
    world = canary()
    assert "not paused" in refused(world, "resume")
    assert "0 to 100, not 101" in refused(world, "set-weight", 101)
    assert "0 to 100, not None" in refused(world, "set-weight")
    assert "nothing to retry" in refused(world, "retry")
    assert "revision 2 cannot serve again" in refused(world, "rollback-to", 2)


def test_refusals_of_an_immediate_rollout() -> None:
    world = World(body(spec(**{"rollout.strategy": "Recreate", "serving.replicas": 3})))
    world.serve()
    change(world, **{"serving.instancesPerReplica": 2})
    world.step()
    for verb in ("pause", "set-weight"):
        assert "at once, without canary steps (strategy Recreate" in refused(world, verb, 10)


def test_abort_of_a_first_revision_is_refused() -> None:
    world = World(body())
    world.start_build()
    world.finish_build()
    world.step()
    assert "the first revision: nothing older serves" in refused(world, "abort")


def test_generation_not_yet_seen_is_refused() -> None:
    world = canary()
    world.body["metadata"]["generation"] += 1
    assert "has not yet seen generation 3" in refused(world, "promote")


def test_steering_writes_and_says() -> None:
    world = canary()
    answer = ask(world, "promote")
    assert isinstance(answer, Steer)
    assert answer.annotations == {
        "modelops.dev/promote": "2",
        "modelops.dev/pause": None,
        "modelops.dev/weight": None,
    }
    assert "revision 2 skips its remaining canary steps" in answer.says
    answer = ask(world, "set-weight", 60)
    assert isinstance(answer, Steer)
    assert answer.annotations == {"modelops.dev/weight": "2:60"}
    assert "60% of requests on 3 of 4 replicas (1 stay" in answer.says
    answer = ask(world, "pause")
    assert isinstance(answer, Steer)
    assert answer.annotations == {"modelops.dev/pause": "2"}
    assert "holds at step 1/3 (25%)" in answer.says
    annotate(world, pause="2")
    answer = ask(world, "resume")
    assert isinstance(answer, Steer)
    assert answer.annotations == {"modelops.dev/pause": None, "modelops.dev/weight": None}
    answer = ask(world, "abort")
    assert isinstance(answer, Steer)
    assert answer.annotations["modelops.dev/abort"] == "2"
    annotate(world, abort="2")
    world.step()
    answer = ask(world, "retry")
    assert isinstance(answer, Steer)
    assert answer.annotations == {"modelops.dev/retry": "t1"}
    assert "revision 2 (Aborted) is tried again" in answer.says
    assert "nothing to abort" in refused(world, "abort")


def test_retry_of_a_failed_build_and_a_pinned_rollback() -> None:
    world = World(body())
    world.start_build()
    world.finish_build(ok=False)
    world.step()
    assert world.status()["phase"] == "Failed"
    answer = ask(world, "retry")
    assert isinstance(answer, Steer)
    assert "the failed build (AccuracyGateFailed) runs again" in answer.says
    world = World(body(spec(**{"rollout.strategy": "Recreate"})))
    world.serve()
    change(world, **{"serving.instancesPerReplica": 2})
    world.step()
    world.roll_on()
    assert world.status()["revision"]["current"] == 2
    answer = ask(world, "rollback-to", 1)
    assert isinstance(answer, Steer)
    assert answer.annotations["modelops.dev/rollback-to"] == "1"
    annotate(world, rollback_to="1")
    world.roll_on()
    assert world.status()["revision"]["current"] == 1
    assert "pinned by modelops.dev/rollback-to" in refused(world, "retry")
