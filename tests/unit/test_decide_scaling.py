"""The autoscaler's decision in reconcile: tables over World, and properties over random worlds."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import MetricsStatus, ModelDeploymentSpec, ModelDeploymentStatus
from modelops_operator.decide.body import parse_body
from modelops_operator.decide.inputs import DecideContext, Observed
from modelops_operator.decide.reconcile import reconcile
from modelops_operator.decide.scale_apply import apply_scale
from modelops_operator.decide.scale_recommend import ScaleDecision
from tests.support.decide_world import (
    FAST,
    SETTINGS,
    T0,
    World,
    applied,
    body,
    change,
    reasons,
    replicas_after,
    spec,
    worlds,
)

SCALING = {"minReplicas": 1, "maxReplicas": 5, "target": 5000, "scaleDownDelaySeconds": 60}
METRICS = MetricsStatus(inferences_per_second=42.0, observed_at="2025-01-01T12:00:00Z")


def scaled_world(**overrides: Any) -> World:
    """A Ready ModelDeployment with scaling, serving 2 replicas of revision 1."""
    world = World(body(spec(scaling=SCALING, **overrides)))
    world.serve()
    world.deployments["resnet-r1"]["spec"]["replicas"] = 2
    world.settle()
    world.step()
    assert world.status()["replicas"] == 2
    return world


def step(world: World, decision: ScaleDecision | None, metrics: MetricsStatus | None = None):
    """One reconcile fed a scaling decision, applied."""
    ctx = DecideContext(world.now, SETTINGS, scale=decision, metrics=metrics)
    plan = reconcile(parse_body(copy.deepcopy(world.body)), world.observed(), ctx)
    world.apply(plan)
    world.body["status"] = plan.status
    return plan


def decision(current: int, desired: int, reason: str = "queueTime 9100us > target 5000us"):
    """A ScaleDecision as autoscale.recommend returns them."""
    return ScaleDecision(desired, current, reason, ((0.0, desired),), 9100.0)


@pytest.mark.parametrize(
    ("current", "desired", "expected", "event"),
    [
        (2, 4, 4, True),  # scale up
        (2, 1, 1, True),  # scale down
        (2, 9, 5, True),  # clamped to maxReplicas
        (2, 0, 1, True),  # clamped to minReplicas: never zero
        (3, 4, 2, False),  # made against another count: stale, dropped
        (2, 2, 2, False),  # no change
    ],
)
def test_scale_decision_table(current: int, desired: int, expected: int, event: bool) -> None:
    world = scaled_world()
    plan = step(world, decision(current, desired), METRICS)
    assert world.replicas() == {"resnet-r1": expected}
    assert plan.status["replicas"] == expected
    assert plan.status["metrics"]["inferencesPerSecond"] == 42.0
    assert ("Scaled" in reasons(plan)) is event
    if event:
        last = plan.status["lastScale"]
        assert (last["from"], last["to"]) == (2, expected)
        assert last["reason"] == "queueTime 9100us > target 5000us"
        assert last["time"] == "2025-01-01T12:00:00Z"
        assert f"2 -> {expected} replicas" in plan.events[-1].message
    else:
        assert "lastScale" not in plan.status


def test_without_scaling_a_decision_is_ignored_and_serving_replicas_rule() -> None:
    world = World(body(spec(**{"serving.replicas": 3})))
    world.serve()
    plan = step(world, decision(3, 5))
    assert world.replicas() == {"resnet-r1": 3}
    assert "lastScale" not in plan.status
    assert reasons(plan) == []


def test_metrics_are_kept_when_none_are_fed() -> None:
    world = scaled_world()
    step(world, None, METRICS)
    plan = step(world, None)
    assert plan.status["metrics"]["inferencesPerSecond"] == 42.0


def test_scaling_during_a_canary_keeps_the_steps_proportion() -> None:
    world = scaled_world()
    world.deployments["resnet-r1"]["spec"]["replicas"] = 4
    world.settle()
    world.step()
    change(world, **{"serving.instancesPerReplica": 2})  # canary steps 50/100
    world.step(enabled=True)
    world.settle()
    world.step(enabled=True)  # the validation run
    assert world.replicas() == {"resnet-r1": 4, "resnet-r2": 2}  # no traffic to r2 yet
    world.step(enabled=True)
    world.settle()
    assert world.replicas() == {"resnet-r1": 2, "resnet-r2": 2}
    plan = step(world, decision(4, 2))
    assert plan.status["replicas"] == 2
    # The canary shrinks first; the old revision follows once the canary is Ready at 1.
    assert applied(plan) == [("Deployment", "resnet-r2", 1)]
    world.settle()
    step(world, None)
    assert world.replicas() == {"resnet-r1": 1, "resnet-r2": 1}
    assert plan.status["revision"]["candidate"] == 2, "the canary goes on at the same step"
    plan = step(world, decision(2, 5))
    assert plan.status["replicas"] == 5
    # Up first (ceil(5 * 50%) = 3 new), the old revision keeps its pods until they are ready.
    assert world.replicas() == {"resnet-r1": 2, "resnet-r2": 3}
    world.settle()
    step(world, None)
    assert world.replicas() == {"resnet-r1": 2, "resnet-r2": 3}


def test_apply_scale_is_pure_and_ignores_a_spec_without_scaling() -> None:
    md_spec = ModelDeploymentSpec.model_validate(spec())
    old = ModelDeploymentStatus(metrics=METRICS)
    ctx = DecideContext(T0, SETTINGS, scale=decision(2, 4))
    out = apply_scale(md_spec, 2, ctx, old, "t")
    assert (out.desired, out.last_scale, out.metrics, out.events) == (2, None, METRICS, ())


@st.composite
def scaled_worlds(draw: st.DrawFn) -> tuple[dict[str, Any], Observed, DecideContext]:
    """Random worlds with spec.scaling and a random (possibly stale) scaling decision."""
    md_body, observed, ctx = draw(worlds())
    low = draw(st.integers(1, 4))
    high = draw(st.integers(low, 8))
    md_body["spec"]["scaling"] = {"minReplicas": low, "maxReplicas": high, "target": 100}
    base = md_body["status"].get("replicas", 1)
    current = draw(st.sampled_from([base, draw(st.integers(0, 10))]))
    scale = ScaleDecision(draw(st.integers(0, 20)), current, "queueTime 1us > target 0us")
    return md_body, observed, dataclasses.replace(ctx, scale=scale, metrics=METRICS)


@FAST
@given(scaled_worlds())
def test_scaled_plans_stay_in_bounds_and_keep_serving(
    world: tuple[dict[str, Any], Observed, DecideContext],
) -> None:
    md_body, observed, ctx = world
    plan = reconcile(parse_body(copy.deepcopy(md_body)), observed, ctx)
    scaling = md_body["spec"]["scaling"]
    low, high = scaling["minReplicas"], scaling["maxReplicas"]
    assert low <= plan.status["replicas"] <= high
    if "lastScale" in plan.status:
        assert low <= plan.status["lastScale"]["to"] <= high
    scaled = [
        a.manifest["spec"]["replicas"]
        for a in plan.changes
        if getattr(a, "manifest", {}).get("kind") == "Deployment"
        and "replicas" in a.manifest["spec"]
    ]
    # A canary may surge (old pods kept until the new are ready), never past twice the max.
    assert all(0 <= n <= 2 * high for n in scaled)
    serving = {n for n, d in observed.deployments.items() if d["status"]["readyReplicas"] >= 1}
    if serving:
        after = replicas_after(observed, plan)
        assert any(after.get(n, 0) > 0 for n in serving), (serving, after)
