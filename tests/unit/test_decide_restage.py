"""decide/restage.py through reconcile: a build whose staged source the engine server lost
(it restarted) stages it again with the source Job and builds again, by itself, at most
`buildBackoffLimit` times; only a failed staging (or a loss past the limit) fails the build."""

from __future__ import annotations

from tests.support.decide_world import World, body, conds, reasons

STAGING = "modelops.dev/staging"


def lose_source(world: World) -> None:
    """Every build Job fails: the engine server no longer holds its source."""
    world.finish_build(ok=False, reason="SourceNotStaged")


def stagings(world: World) -> tuple[list[str], list[str]]:
    """The staging annotation of the source Jobs and of the build Jobs."""
    source = [
        j["metadata"]["annotations"][STAGING]
        for j in world.jobs.values()
        if j["metadata"]["labels"].get("app.kubernetes.io/component") == "source"
    ]
    build = [j["metadata"]["annotations"][STAGING] for j in world.build_jobs.values()]
    return source, build


def test_a_lost_source_is_staged_again_and_the_build_finishes_with_no_user_action() -> None:
    world = World(body())
    world.start_build()
    assert stagings(world) == (["0"], ["0"])
    lose_source(world)
    plan = world.step()
    assert reasons(plan) == ["SourceRestaged"]
    event = next(e for e in plan.events if e.reason == "SourceRestaged")
    assert "no longer holds the source" in event.message
    assert "staging 1 of at most 1" in event.message
    assert plan.status["phase"] == "Building"
    assert conds(plan.status)["EngineBuilt"] == ("False", "RestagingSource")
    assert conds(plan.status)["Degraded"] == ("False", "AsExpected")
    for _ in range(4):  # the new source Job runs, the failed build Job goes, a new one starts
        plan = world.step()
        assert "BuildFailed" not in reasons(plan)
    assert stagings(world) == (["1"], ["1"])
    assert all(e.reason != "SourceRestaged" for p in world.plans[-4:] for e in p.events)
    world.finish_build()
    world.step()
    assert world.roll_on().status["phase"] == "Ready"


def test_a_source_lost_again_past_the_limit_fails_the_build() -> None:
    world = World(body())
    world.start_build()
    lose_source(world)
    for _ in range(5):
        world.step()
    assert stagings(world) == (["1"], ["1"])
    lose_source(world)
    plan = world.step()
    assert reasons(plan) == ["BuildFailed"]
    assert plan.status["phase"] == "Failed"
    assert conds(plan.status)["EngineBuilt"] == ("False", "SourceNotStaged")


def test_a_failed_staging_fails_the_build() -> None:
    world = World(body())
    world.start_build()
    world.source = "fail"  # the tenant's credentials no longer read the model
    lose_source(world)
    plan = world.step()
    for _ in range(4):
        if plan.status["phase"] == "Failed":
            break
        plan = world.step()
    assert plan.status["phase"] == "Failed"
    assert conds(plan.status)["EngineBuilt"] == ("False", "FetchFailed")
    assert [e.reason for p in world.plans for e in p.events].count("BuildFailed") == 1
