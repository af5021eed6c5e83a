"""The World harness itself: it applies plans the way the k8s layer does."""

from __future__ import annotations

from tests.support.decide_world import World, body, reasons


def test_world_serves_a_first_revision() -> None:
    world = World(body())
    plan = world.serve()
    assert world.status()["phase"] == "Ready", world.status()
    assert world.replicas() == {"resnet-r1": 2}
    assert "RolledOut" in [r for p in world.plans for r in reasons(p)]
    assert plan.changes == ()


def test_world_applies_only_a_prefix_when_asked() -> None:
    world = World(body())
    world.start_build()
    world.finish_build()
    plan = world.decide()
    world.apply(plan, limit=2)  # the source Job's deletion, then one child
    assert not world.jobs
    assert len(world.configmaps) + len(world.deployments) + (world.service is not None) == 1
