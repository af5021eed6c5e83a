"""reconcile(): every phase transition, as (spec, observed children, now) -> plan and status."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelops_operator.decide.analysis import Analysis, Verdict
from modelops_operator.decide.plan import Apply, Delete
from modelops_operator.decide.revisions import view_revision
from modelops_operator.render.names import build_job_name
from tests.support.decide_world import (
    OPERATOR_NS,
    SHA,
    World,
    analysis,
    applied,
    body,
    change,
    conds,
    entry,
    entry_digest,
    key_of,
    reasons,
    receipt,
    spec,
)


def conds_messages(status: dict[str, object]) -> dict[str, str]:
    """type -> message."""
    return {c["type"]: c["message"] for c in status["conditions"]}  # type: ignore[attr-defined,index]


# --- invalid spec ----------------------------------------------------------------------------
def test_invalid_spec_fails_with_the_field_and_one_warning() -> None:
    bad = body(spec(**{"build.optBatchSize": 64, "build.maxBatchSize": 8}))
    world = World(bad)
    plan = world.step()
    assert plan.changes == ()
    assert [e.type for e in plan.events] == ["Warning"]
    assert plan.events[0].reason == "InvalidSpec"
    assert plan.status["phase"] == "Failed"
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.build" in ready["message"]
    assert "optBatchSize" in ready["message"]
    # The same invalid spec again: nothing new to say.
    assert world.step().events == ()


def test_invalid_spec_leaves_a_serving_revision_alone() -> None:
    world = World(body())
    world.serve()
    change(world, **{"serving.instancesPerReplica": 99})
    plan = world.step()
    assert plan.changes == ()
    assert plan.status["phase"] == "Failed"
    assert plan.status["revision"] == {"current": 1}


# --- source and build ------------------------------------------------------------------------
def test_pending_fetches_the_source_then_builds_in_the_operators_namespace() -> None:
    world = World(body())
    world.source = None  # the source Job runs on
    plan = world.step()
    source = f"resnet-source-{key_of(world.body)[7:17]}"
    assert applied(plan) == [("Job", source, None)]
    job = plan.changes[0].manifest  # type: ignore[union-attr]
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["annotations"]["modelops.dev/keep"] == "true"
    assert plan.status["phase"] == "Building"
    assert conds(plan.status)["EngineBuilt"] == ("False", "FetchingSource")
    assert world.step().actions == ()
    world.finish_source(source, ok=True)
    plan = world.step()
    build = build_job_name("ml", "resnet", key_of(world.body))
    assert applied(plan) == [("Job", build, None)]
    assert plan.changes[0].manifest["metadata"]["namespace"] == OPERATOR_NS  # type: ignore[union-attr]
    assert reasons(plan) == ["SourceVerified", "BuildStarted"]
    assert conds(plan.status)["EngineBuilt"] == ("False", "Building")
    assert plan.status["sourceAccess"]["sha256"] == SHA
    assert plan.requeue_after is not None
    running = world.step()
    assert running.actions == ()
    assert running.status["phase"] == "Building"
    assert running.requeue_after is not None


def test_build_success_creates_revision_one_then_validates_then_ready() -> None:
    world = World(body())
    world.start_build()
    world.finish_build()
    plan = world.step()
    assert reasons(plan) == ["BuildSucceeded", "RevisionCreated"]
    # The source Job has done its part: the proof is in status.
    assert Delete("batch/v1", "Job", f"resnet-source-{key_of(world.body)[7:17]}") in plan.changes
    assert applied(plan) == [
        ("ConfigMap", "resnet-r1", None),
        ("Deployment", "resnet-r1", 2),
        ("Service", "resnet-r1", None),
        ("ConfigMap", "resnet-router", None),
        ("Deployment", "resnet-router", 2),
        ("Service", "resnet", None),
    ]
    deployment = world.deployments["resnet-r1"]
    pinned = entry_digest(world.store[key_of(world.body)])
    assert deployment["metadata"]["annotations"]["modelops.dev/manifest-sha256"] == pinned
    pull = deployment["spec"]["template"]["spec"]["initContainers"][0]["args"]
    assert pull[pull.index("--manifest-sha256") + 1] == pinned
    status = plan.status
    assert status["phase"] == "RollingOut"
    assert status["engine"]["key"] == key_of(world.body)
    assert status["engine"]["throughput"] == 4000.0
    assert status["revision"] == {"candidate": 1}
    # No client request before the validation run: the router gives revision 1 nothing.
    assert status["traffic"]["weights"] == [{"revision": 1, "weight": 0}]
    # The Service selects the router's pods from its creation, never the Triton pods.
    assert world.services["resnet"]["spec"]["selector"]["app.kubernetes.io/name"] == (
        "modelops-router"
    )
    world.settle()
    validating = world.step()
    assert ("Job", "resnet-validate-r1", None) in applied(validating)
    assert "validating before any client request" in validating.status["message"]
    done = world.step()
    assert reasons(done) == ["ValidationPassed", "RolledOut", "TrafficShifted"]
    # Ready only once the router pods run the table that sends revision 1 its requests.
    assert done.status["phase"] == "Pending"
    assert conds(done.status)["Ready"] == ("False", "WaitingForRouter")
    assert "route table version" in done.status["message"]
    assert done.requeue_after == pytest.approx(1.0)
    done = world.step()
    assert reasons(done) == []
    status = done.status
    assert status["phase"] == "Ready"
    assert status["traffic"]["weights"] == [{"revision": 1, "weight": 100}]
    assert status["validation"]["passed"] is True
    assert status["validation"]["samples"] == 8
    assert conds(status) == {
        "Degraded": ("False", "AsExpected"),
        "EngineBuilt": ("True", "Built"),
        "Ready": ("True", "Serving"),
        "RolledOut": ("True", "RolledOut"),
    }
    assert status["revision"] == {"current": 1}
    assert status["ready"] == "2/2"
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert status["selector"] == "modelops.dev/deployment=resnet,app.kubernetes.io/name=triton"
    assert status["endpoint"] == {"http": "resnet.ml.svc:8000", "grpc": "resnet.ml.svc:8001"}
    assert status["observedGeneration"] == 1
    assert [(h["revision"], h["state"]) for h in status["history"]] == [(1, "Serving")]
    world.roll_on()
    assert world.decide().changes == ()
    assert world.decide().requeue_after is None


def test_cache_hit_rolls_out_after_proving_access_without_a_build() -> None:
    world = World(body())
    world.store[key_of(world.body)] = entry(key_of(world.body))
    first = world.step()
    assert [(k, n) for k, n, _ in applied(first)] == [
        ("Job", f"resnet-source-{key_of(world.body)[7:17]}")
    ]
    job = first.changes[0].manifest  # type: ignore[union-attr]
    assert job["metadata"]["annotations"]["modelops.dev/keep"] == "false"
    plan = world.step()
    assert [k for k, _, _ in applied(plan)][:2] == ["ConfigMap", "Deployment"]
    assert not world.build_jobs
    assert reasons(plan)[:2] == ["SourceVerified", "BuildSucceeded"]
    assert "found in the store" in plan.events[1].message
    assert plan.status["engine"]["latencyMs"] == {"p50": 1.0, "p99": 2.0}


def test_a_tenant_without_access_to_the_source_gets_no_engine_from_a_hit() -> None:
    world = World(body())
    world.store[key_of(world.body)] = entry(key_of(world.body))
    world.source = "fail"
    world.step()
    plan = world.step()
    assert plan.status["phase"] == "Failed"
    assert conds(plan.status)["EngineBuilt"] == ("False", "FetchFailed")
    assert "HTTP 403" in conds_messages(plan.status)["EngineBuilt"]
    assert reasons(plan) == ["BuildFailed"]
    assert not world.deployments
    assert world.step().events == (), "reported once"


def test_a_forged_source_summary_without_a_valid_receipt_proves_nothing() -> None:
    world = World(body())
    world.store[key_of(world.body)] = entry(key_of(world.body))
    world.source = None
    world.step()
    name = next(iter(world.jobs))
    world.finish_source(name, ok=True)
    # Any pod in the tenant's namespace can say "ok": only the engine server's receipt counts.
    summary = json.loads(world.messages[name])
    summary["receipt"] = receipt("cd" * 32)  # a receipt for other bytes
    world.messages[name] = json.dumps(summary)
    plan = world.step()
    assert not world.deployments
    assert conds(plan.status)["EngineBuilt"][0] == "False"
    assert plan.status["phase"] == "Failed"


def test_a_receipt_of_another_modeldeployment_proves_nothing() -> None:
    world = World(body())
    world.store[key_of(world.body)] = entry(key_of(world.body))
    world.body["status"] = {
        "sourceAccess": {"sha256": SHA, "receipt": receipt(uid="another-uid"), "time": "x"}
    }
    plan = world.step()
    assert [k for k, _, _ in applied(plan)] == ["Job"], "a source Job, not a revision"


def test_an_unsigned_or_changed_entry_is_refused_and_rebuilt() -> None:
    world = World(body())
    world.serve()
    key = key_of(world.body)
    tampered = dict(world.store[key], maxBatchSize=64)  # changed after publishing
    world.store[key] = tampered
    plan = world.step()  # revision 1 is pinned to an entry now refused: build it again
    assert conds(plan.status)["EngineBuilt"] == ("False", "Rebuilding")
    assert [(a.kind, a.namespace) for a in plan.changes] == [("Job", OPERATOR_NS)]
    plan = world.step()  # from the source: the engine server dropped the bytes once published
    assert [k for k, _, _ in applied(plan)] == ["Job"]
    plan = world.step()
    assert reasons(plan) == ["EngineRefused", "BuildStarted"]
    build = world.build_jobs[build_job_name("ml", "resnet", key)]
    assert build["metadata"]["annotations"]["modelops.dev/replaces"] == entry_digest(tampered)
    world.finish_build()
    world.store[key] = entry(key, created_at="2025-01-02T00:00:00Z")  # a new build's entry
    plan = world.step()
    assert reasons(plan)[:2] == ["BuildSucceeded", "RevisionCreated"]
    assert plan.status["revision"] == {"current": 1, "candidate": 2}


def test_an_entry_refused_again_after_its_rebuild_fails_instead_of_looping() -> None:
    world = World(body())
    world.start_build()
    world.finish_build()
    key = key_of(world.body)
    world.store[key] = entry(key, signed=False)
    plan = world.step()
    assert reasons(plan) == ["EngineRefused", "BuildStarted"] or conds(plan.status)[
        "EngineBuilt"
    ] == ("False", "Rebuilding")
    for _ in range(3):
        world.finish_build()
        world.store[key] = entry(key, signed=False)  # a publisher with another key
        plan = world.step()
    assert plan.status["phase"] == "Failed"
    assert conds(plan.status)["EngineBuilt"] == ("False", "EngineRefused")
    assert "share the store's key" in conds_messages(plan.status)["EngineBuilt"]


def test_first_build_failure_is_failed_and_reported_once() -> None:
    world = World(body())
    world.start_build()
    world.finish_build(ok=False)
    plan = world.step()
    assert plan.status["phase"] == "Failed"
    assert conds(plan.status)["EngineBuilt"] == ("False", "AccuracyGateFailed")
    assert conds(plan.status)["Ready"] == ("False", "AccuracyGateFailed")
    assert reasons(plan) == ["BuildFailed"]
    assert "max abs 0.3" in plan.events[0].message
    assert plan.changes == ()
    again = world.step()
    assert again.actions == ()
    assert again.status == plan.status


def test_build_failure_with_an_older_revision_degrades_and_keeps_serving() -> None:
    world = World(body())
    world.serve()
    change(world, **{"build.precision": "fp16"})
    world.start_build()
    world.finish_build(ok=False)
    plan = world.step()
    assert plan.status["phase"] == "Degraded"
    assert conds(plan.status)["Degraded"] == ("True", "BuildFailed")
    assert plan.changes == ()
    assert world.replicas() == {"resnet-r1": 2}


def test_failed_build_is_retried_from_the_source_for_a_new_retry_value() -> None:
    world = World(body())
    world.start_build()
    world.finish_build(ok=False)
    world.step()
    world.body["metadata"]["annotations"]["modelops.dev/retry"] = "1"
    plan = world.step()
    assert not world.build_jobs
    deleted = {(a.kind, a.namespace) for a in plan.changes if isinstance(a, Delete)}
    assert deleted == {("Job", OPERATOR_NS), ("Job", None)}, "the build and its source"
    again = world.start_build()
    assert reasons(again) == ["BuildStarted"]
    job = next(iter(world.build_jobs.values()))
    assert job["metadata"]["annotations"]["modelops.dev/retry"] == "1"


def test_model_change_builds_a_new_engine_and_drops_the_old_job() -> None:
    world = World(body())
    world.serve()
    old_job = next(iter(world.build_jobs))
    change(world, **{"model.source.sha256": "cd" * 32})
    plan = world.start_build()
    assert Delete("batch/v1", "Job", old_job, OPERATOR_NS) in plan.changes
    assert reasons(plan) == ["SourceVerified", "BuildStarted"]
    assert plan.status["phase"] == "Building"
    assert conds(plan.status)["Ready"] == ("False", "Building")
    assert world.replicas() == {"resnet-r1": 2}


def test_serving_only_change_rolls_out_without_a_build() -> None:
    world = World(body())
    world.serve()
    change(world, **{"serving.dynamicBatching": {"maxQueueDelayMicroseconds": 500}})
    plan = world.step()
    assert not any(a.manifest["kind"] == "Job" for a in plan.changes if isinstance(a, Apply))
    assert reasons(plan) == ["RevisionCreated"]
    assert plan.status["revision"] == {"current": 1, "candidate": 2}
    configmap = next(a.manifest for a in plan.changes if isinstance(a, Apply))
    assert "max_queue_delay_microseconds: 500" in configmap["data"]["config.pbtxt"]


def test_replica_change_only_scales_the_current_revision() -> None:
    world = World(body())
    world.serve()
    change(world, **{"serving.replicas": 5})
    plan = world.step()
    assert applied(plan) == [("Deployment", "resnet-r1", 5)]
    assert plan.status["phase"] == "Degraded"  # 2 of 5 ready until the pods come up
    world.settle()
    assert world.step().status["phase"] == "Ready"


@pytest.mark.parametrize(
    ("generation", "observed", "ready"),
    [
        (2, 1, False),  # the controller has not seen the newest spec: its counts are stale
        (2, 2, True),
        (3, 4, True),
        (2, None, True),  # no observedGeneration written (yet): counts taken as they are
        (None, 1, True),
    ],
)
def test_a_revision_is_ready_only_on_counts_of_its_newest_spec(
    generation: int | None, observed: int | None, ready: bool
) -> None:
    meta: dict[str, Any] = {"name": "resnet-r2", "labels": {"modelops.dev/revision": "2"}}
    if generation is not None:
        meta["generation"] = generation
    status: dict[str, Any] = {"replicas": 2, "readyReplicas": 2}
    if observed is not None:
        status["observedGeneration"] = observed
    deployment = {"metadata": meta, "spec": {"replicas": 2}, "status": status}
    assert view_revision("resnet-r2", deployment, []).ready_at(2) is ready


# --- canary ----------------------------------------------------------------------------------
def canary_world(replicas: int = 4, steps: list[int] | None = None) -> World:
    world = World(body(spec(**{"serving.replicas": replicas})))
    world.serve()
    if steps:
        world.body["spec"]["rollout"]["canary"]["steps"] = steps
    change(world, **{"serving.instancesPerReplica": 2})
    return world


def weights(plan: object) -> dict[int, int]:
    """status.traffic as revision -> weight."""
    return {w["revision"]: w["weight"] for w in plan.status["traffic"]["weights"]}  # type: ignore[attr-defined]


def test_canary_validates_then_steps_weights_and_replicas_then_promotes() -> None:
    world = canary_world(4, [25, 50, 100])
    plan = world.step()
    assert reasons(plan) == ["RevisionCreated"]
    assert ("Deployment", "resnet-r2", 1) in applied(plan)
    assert ("Service", "resnet-r2", None) in applied(plan)
    assert weights(plan) == {1: 100, 2: 0}
    assert world.replicas() == {"resnet-r1": 4, "resnet-r2": 1}  # old keeps all until new ready
    world.settle()
    plan = world.step()  # ready: the validation run starts, still no traffic
    assert ("Job", "resnet-validate-r2", None) in applied(plan)
    assert weights(plan) == {1: 100, 2: 0}
    assert world.replicas() == {"resnet-r1": 4, "resnet-r2": 1}
    plan = world.step()  # validated: 25% of requests, the old revision shrinks to its share
    assert reasons(plan) == ["ValidationPassed", "TrafficShifted"]
    assert weights(plan) == {1: 75, 2: 25}
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 1}
    assert Delete("batch/v1", "Job", "resnet-validate-r2") in plan.changes
    assert plan.requeue_after == pytest.approx(10.0)
    world.tick(10)
    plan = world.step()
    assert reasons(plan) == ["StepPromoted"]
    assert plan.status["rollout"]["step"] == 1
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 2}
    assert weights(plan) == {1: 75, 2: 25}  # 50% only once the new pods are ready
    world.settle()
    plan = world.step()
    assert weights(plan) == {1: 50, 2: 50}
    assert world.replicas() == {"resnet-r1": 2, "resnet-r2": 2}
    world.tick(10)
    assert reasons(world.step()) == ["StepPromoted"]
    world.settle()
    plan = world.step()
    assert weights(plan) == {1: 0, 2: 100}
    # The router still runs the table that gives revision 1 requests: its pods stay.
    assert world.replicas() == {"resnet-r1": 2, "resnet-r2": 4}
    plan = world.step()
    assert world.replicas() == {"resnet-r1": 0, "resnet-r2": 4}
    world.tick(10)
    plan = world.step()
    assert reasons(plan) == ["RolledOut"]
    assert plan.status["phase"] == "Pending"  # until the router runs the table without r1
    plan = world.step()
    assert plan.status["phase"] == "Ready"
    assert plan.status["revision"] == {"current": 2, "previous": 1}
    assert [(h["revision"], h["state"]) for h in plan.status["history"]] == [
        (1, "Superseded"),
        (2, "Serving"),
    ]


def validated_canary(replicas: int = 4) -> World:
    """A canary whose first step is ready and validated: it takes its share of requests."""
    world = canary_world(replicas)
    world.step(enabled=True)
    world.settle()
    world.step(enabled=True)  # the validation run
    world.step(enabled=True)  # validated
    world.settle()
    assert world.status()["rollout"]["validated"] is True
    return world


def test_readiness_alone_never_advances_when_analysis_is_fed() -> None:
    world = validated_canary()
    world.tick(100)
    plan = world.step(enabled=True)
    assert reasons(plan) == []
    assert plan.status["rollout"]["step"] == 0
    plan = world.step({2: analysis("pass")}, enabled=True)
    assert plan.status["rollout"]["passes"] == 1
    assert reasons(plan) == []
    plan = world.step({2: analysis("inconclusive", "metrics unreachable")}, enabled=True)
    assert plan.status["rollout"]["passes"] == 1
    plan = world.step({2: analysis("pass")}, enabled=True)
    assert reasons(plan) == ["StepPromoted"]
    assert plan.status["rollout"]["passes"] == 0


def test_analyses_before_validation_count_for_nothing() -> None:
    world = canary_world()
    world.step(enabled=True)
    world.settle()
    world.validation = None  # the validation run takes its time
    world.step(enabled=True)
    plan = world.step({2: analysis("fail", "errorRate 1 > maxErrorRate 0.01")}, enabled=True)
    plan = world.step({2: analysis("fail", "errorRate 1 > maxErrorRate 0.01")}, enabled=True)
    assert plan.status["rollout"]["failures"] == 0
    assert plan.status["phase"] == "RollingOut"


def test_a_step_without_client_traffic_passes_on_its_validation_run() -> None:
    world = validated_canary()
    no_traffic = Analysis(Verdict.INCONCLUSIVE, note="no client traffic", no_traffic=True)
    plan = world.step({2: no_traffic}, enabled=True)
    assert plan.status["rollout"]["passes"] == 1
    assert "passed on its validation run" in plan.status["rollout"]["note"]
    plan = world.step({2: no_traffic}, enabled=True)
    assert reasons(plan) == ["StepPromoted"]


def test_wait_keeps_a_step_without_client_traffic_waiting() -> None:
    world = validated_canary()
    world.body["spec"]["rollout"]["noTraffic"] = "Wait"
    no_traffic = Analysis(Verdict.INCONCLUSIVE, note="no client traffic", no_traffic=True)
    for _ in range(5):
        plan = world.step({2: no_traffic}, enabled=True)
    assert plan.status["rollout"]["passes"] == 0
    assert plan.status["rollout"]["step"] == 0


def test_failed_analyses_roll_back_weight_first_capacity_kept() -> None:
    world = validated_canary()
    plan = world.step({2: analysis("fail", "errorRate 0.2 > maxErrorRate 0.01")}, enabled=True)
    assert plan.status["rollout"]["failures"] == 1
    plan = world.step({2: analysis("fail", "errorRate 0.3 > maxErrorRate 0.01")}, enabled=True)
    assert reasons(plan) == ["RolledBack", "TrafficShifted"]
    assert conds(plan.status)["Degraded"] == ("True", "AnalysisFailed")
    assert "errorRate 0.3" in plan.events[0].message
    assert plan.status["phase"] == "RolledBack"
    # Its weight goes to 0 at once; the old revision scales back up first, and the candidate
    # keeps its pods until the router runs the new weights and the old revision is back.
    assert weights(plan) == {1: 100, 2: 0}
    assert applied(plan)[-1] == ("Deployment", "resnet-r1", 4)
    assert world.replicas() == {"resnet-r1": 4, "resnet-r2": 2}
    world.step()
    assert world.replicas() == {"resnet-r1": 4, "resnet-r2": 2}  # r1 not ready at 4 yet
    world.settle()
    world.step()
    assert world.replicas() == {"resnet-r1": 4, "resnet-r2": 0}


def test_validation_failure_rolls_back_with_zero_client_requests() -> None:
    world = canary_world()
    world.validation = "fail"
    world.step()
    world.settle()
    world.step()  # the validation run fails
    plan = world.step()
    assert reasons(plan) == ["RolledBack"]
    assert conds(plan.status)["Degraded"] == ("True", "ValidationFailed")
    assert "serves wrong answers" in plan.events[0].message
    assert plan.status["validation"]["passed"] is False
    # The candidate never had a weight above 0.
    for earlier in world.plans:
        assert dict(weights(earlier)).get(2, 0) == 0


def test_crash_loop_rolls_back_and_the_generation_is_not_retried() -> None:
    world = canary_world()
    world.step()
    world.crash("resnet-r2")
    plan = world.step()
    assert reasons(plan) == ["RolledBack"]
    assert plan.events[0].type == "Warning"
    assert "restarted 4 times" in plan.events[0].message
    assert plan.status["phase"] == "RolledBack"
    assert conds(plan.status)["Degraded"] == ("True", "CrashLoop")
    assert conds(plan.status)["Ready"] == ("False", "CrashLoop")
    assert plan.status["revision"] == {"current": 1}
    entry = plan.status["history"][-1]
    assert (entry["revision"], entry["state"], entry["generation"]) == (2, "RolledBack", 2)
    assert entry["reason"].startswith("CrashLoop: ")
    assert world.replicas() == {"resnet-r1": 4, "resnet-r2": 0}
    world.settle()
    world.tick(600)
    world.step()  # the router's table drops revision 2
    again = world.step()
    assert again.changes == ()
    assert again.events == ()
    assert again.status["phase"] == "RolledBack"


def test_progress_deadline_rolls_back_with_figures() -> None:
    world = canary_world()
    world.step()
    world.tick(121)
    plan = world.step()
    assert reasons(plan) == ["RolledBack"]
    assert conds(plan.status)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert "0/2 replicas ready after 121s" in plan.events[0].message
    assert "progressDeadlineSeconds 120" in plan.events[0].message


def test_retry_annotation_starts_a_new_attempt() -> None:
    world = canary_world()
    world.step()
    world.crash("resnet-r2")
    world.step()
    world.body["metadata"]["annotations"]["modelops.dev/retry"] = "again"
    plan = world.step()
    assert reasons(plan) == ["RevisionCreated"]
    assert plan.status["revision"] == {"current": 1, "candidate": 3}
    assert plan.status["phase"] == "RollingOut"
    # A crash under the new value blocks again, remembering the value.
    world.crash("resnet-r3")
    plan = world.step()
    assert "[retry=again]" in plan.status["history"][-1]["reason"]
    world.step()  # the router's table drops revision 3
    assert world.step().changes == ()


def test_new_generation_after_rollback_starts_a_new_attempt() -> None:
    world = canary_world()
    world.step()
    world.crash("resnet-r2")
    world.step()
    change(world, **{"serving.instancesPerReplica": 3})
    plan = world.step()
    assert plan.status["revision"]["candidate"] == 3


def test_spec_change_mid_canary_supersedes_the_candidate() -> None:
    world = canary_world()
    world.step()
    world.settle()
    world.step()
    change(world, **{"serving.instancesPerReplica": 3})
    plan = world.step()
    assert reasons(plan) == ["RolloutSuperseded", "RevisionCreated"]
    assert plan.status["revision"] == {"current": 1, "candidate": 3}
    assert world.replicas()["resnet-r2"] == 0
    assert world.replicas()["resnet-r1"] >= 2


def test_recreate_validates_then_replaces_at_once() -> None:
    world = World(body(spec(**{"rollout.strategy": "Recreate", "serving.replicas": 3})))
    world.serve()
    change(world, **{"serving.instancesPerReplica": 2})
    world.step()
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 3}
    world.settle()
    world.step()  # the validation run
    plan = world.step()
    assert reasons(plan) == ["ValidationPassed", "RolledOut", "TrafficShifted"]
    assert weights(plan) == {1: 0, 2: 100}
    assert world.replicas() == {"resnet-r1": 3, "resnet-r2": 3}  # until the router runs it
    world.step()
    assert world.replicas() == {"resnet-r1": 0, "resnet-r2": 3}


def test_first_revision_crash_loop_fails_without_rollback_target() -> None:
    world = World(body())
    world.start_build()
    world.finish_build()
    world.step()
    world.crash("resnet-r1")
    plan = world.step()
    assert reasons(plan) == ["RolloutFailed"]
    assert plan.status["phase"] == "Failed"
    assert plan.status["history"][-1]["state"] == "Failed"
    assert world.replicas() == {"resnet-r1": 0}


# --- manual rollback -------------------------------------------------------------------------
def test_rollback_to_annotation_serves_an_older_revision() -> None:
    world = canary_world(2)
    world.step()
    world.settle()
    for _ in range(6):
        world.tick(10)
        world.step()
        world.settle()
    assert world.status()["revision"] == {"current": 2, "previous": 1}
    world.body["metadata"]["annotations"]["modelops.dev/rollback-to"] = "1"
    plan = world.step()
    assert reasons(plan) == ["RolledBack"]
    assert world.replicas() == {"resnet-r1": 2, "resnet-r2": 2}
    world.settle()
    plan = world.step()  # it served before: no validation run, all requests at once
    assert reasons(plan) == ["RolledOut", "TrafficShifted"]
    assert weights(plan) == {1: 100, 2: 0}
    world.step()
    assert world.replicas() == {"resnet-r1": 2, "resnet-r2": 0}
    world.step()
    plan = world.step()
    assert plan.status["revision"] == {"current": 1, "previous": 2}
    assert plan.status["phase"] == "RolledBack"
    assert conds(plan.status)["Ready"] == ("True", "Serving")
    assert conds(plan.status)["RolledOut"] == ("True", "Pinned")
    assert plan.changes == ()


def test_rollback_to_an_unknown_revision_is_a_warning() -> None:
    world = World(body(annotations={"modelops.dev/rollback-to": "7"}))
    world.serve()
    plan = world.step()
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "RollbackTargetInvalid")]
    assert plan.status["phase"] == "Ready"


# --- scaling, idempotence --------------------------------------------------------------------
def test_scaling_keeps_the_autoscalers_count_clamped() -> None:
    scaled = spec(scaling={"minReplicas": 2, "maxReplicas": 5, "target": 5000})
    world = World(body(scaled))
    world.serve()
    assert world.replicas() == {"resnet-r1": 2}
    world.deployments["resnet-r1"]["spec"]["replicas"] = 4  # the autoscaler's decision
    world.settle()
    assert world.step().changes == ()
    assert world.status()["ready"] == "4/4"
    world.deployments["resnet-r1"]["spec"]["replicas"] = 9
    assert applied(world.step()) == [("Deployment", "resnet-r1", 5)]


def test_same_inputs_same_plan_and_metrics_are_preserved() -> None:
    world = World(body())
    world.serve()
    world.body["status"]["metrics"] = {"inferencesPerSecond": 12.5}
    world.body["status"]["lastScale"] = {"from": 1, "to": 2, "reason": "x", "time": "t"}
    first, second = world.decide(), world.decide()
    assert first == second
    assert first.status["metrics"] == {"inferencesPerSecond": 12.5}
    assert first.status["lastScale"]["to"] == 2


def test_partial_apply_is_finished_by_the_next_reconcile() -> None:
    world = World(body())
    world.start_build()
    world.finish_build()
    plan = world.decide()
    # Only the source Job's deletion and the ConfigMap landed; the status patch was lost.
    world.apply(plan, limit=2)
    retry = world.step()
    assert [(k, n) for k, n, _ in applied(retry)] == [
        ("Deployment", "resnet-r1"),
        ("Service", "resnet-r1"),
        ("ConfigMap", "resnet-router"),
        ("Deployment", "resnet-router"),
        ("Service", "resnet"),
    ]
    assert retry.status["revision"] == {"candidate": 1}


def test_created_revision_whose_status_was_lost_is_adopted() -> None:
    world = World(body())
    world.serve()
    change(world, **{"serving.instancesPerReplica": 2})
    world.apply(world.decide())  # children written, status not
    plan = world.step()
    assert plan.status["revision"] == {"current": 1, "candidate": 2}
    assert "resnet-r3" not in world.deployments


def test_transition_times_move_only_on_flips() -> None:
    world = World(body())
    world.step()
    first = {c["type"]: c["lastTransitionTime"] for c in world.status()["conditions"]}
    world.tick(30)
    world.step()
    later = {c["type"]: c["lastTransitionTime"] for c in world.status()["conditions"]}
    assert first == later
    world.finish_build()
    world.step()
    assert world.condition("EngineBuilt")["lastTransitionTime"] != first["EngineBuilt"]
