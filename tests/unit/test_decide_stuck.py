"""Stuck pods: read from pod conditions and container waiting states (decide/pod_health.py),
surfaced as a condition and an Event within one look, failed after settings.stuck_seconds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.decide.pod_health import stuck, tampered_report
from modelops_operator.render.names import build_job_name
from tests.support.decide_world import (
    SETTINGS,
    T0,
    World,
    body,
    conds,
    key_of,
    reasons,
)

UNSCHEDULABLE = (
    '0/3 nodes are available: persistentvolumeclaim "modelops-engines" not found. '
    "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
)
PULL = 'Back-off pulling image "ghcr.io/modelops/builder:0.1.0-ngc26.10"'


def when(seconds: float = 0) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pending(name: str = "p-0", message: str = UNSCHEDULABLE, at: float = 0) -> dict[str, Any]:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": when(at),
    }
    return {
        "metadata": {"name": name, "creationTimestamp": when(at)},
        "status": {"phase": "Pending", "conditions": [condition]},
    }


def waiting(
    reason: str, message: str = "", *, init: bool = False, name: str = "p-0"
) -> dict[str, Any]:
    container = {"name": "build", "state": {"waiting": {"reason": reason, "message": message}}}
    key = "initContainerStatuses" if init else "containerStatuses"
    return {
        "metadata": {"name": name, "creationTimestamp": when()},
        "status": {"phase": "Pending", "startTime": when(), key: [container]},
    }


@pytest.mark.parametrize(
    ("pod", "reason", "words"),
    [
        (pending(), "Unschedulable", 'persistentvolumeclaim "modelops-engines" not found'),
        (pending(message="0/2 nodes are available: 2 Insufficient nvidia.com/gpu."),
         "Unschedulable", "Insufficient nvidia.com/gpu"),
        (waiting("ImagePullBackOff", PULL), "ImagePullBackOff", PULL),
        (waiting("ErrImagePull", "not found", init=True), "ErrImagePull", "container build"),
        (waiting("InvalidImageName", "bad ref"), "InvalidImageName", "bad ref"),
        (waiting("CreateContainerConfigError", 'secret "s3-reader" not found'),
         "CreateContainerConfigError", 'secret "s3-reader" not found'),
    ],
)  # fmt: skip
def test_a_stuck_pod_says_why_in_the_clusters_words(pod: Any, reason: str, words: str) -> None:
    found = stuck([pod])
    assert found is not None
    assert found.reason == reason
    assert words in found.message
    assert found.message.startswith("pod p-0")
    assert found.since == T0


@pytest.mark.parametrize(
    "pod",
    [
        waiting("ContainerCreating"),
        waiting("PodInitializing"),
        {"metadata": {"name": "ok"}, "status": {"phase": "Running"}},
        {**pending(), "metadata": {"name": "gone", "deletionTimestamp": when()}},
    ],
)
def test_pods_that_are_merely_starting_or_leaving_are_not_stuck(pod: Any) -> None:
    assert stuck([pod]) is None


@given(st.permutations([pending("b"), waiting("ImagePullBackOff", PULL, name="a"), waiting("x")]))
def test_the_answer_does_not_depend_on_the_pods_order(pods: list[Any]) -> None:
    found = stuck(pods)
    assert found is not None
    assert found.message.startswith("pod a ")


def test_a_pull_that_refused_the_entry_is_read_from_its_termination_message() -> None:
    message = "modelops-build pull: EngineTampered: .../model.onnx: sha256 1f2e... is not ..."
    pod = {
        "status": {
            "initContainerStatuses": [
                {
                    "name": "pull-engine",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "message": message}},
                }
            ]
        }
    }
    assert tampered_report([pod], "pull-engine") == message
    assert tampered_report([pod], "other") is None


# --- through reconcile ---------------------------------------------------------------------------
def building_world() -> tuple[World, str]:
    world = World(body())
    world.start_build()
    name = build_job_name("ml", "resnet", key_of(world.body))
    return world, name


def test_an_unschedulable_build_pod_is_a_condition_and_one_event_at_once() -> None:
    world, job = building_world()
    world.job_pods[job] = (pending(),)
    plan = world.step()
    assert conds(plan.status)["EngineBuilt"] == ("False", "Unschedulable")
    built = next(c for c in plan.status["conditions"] if c["type"] == "EngineBuilt")
    assert job in built["message"]
    assert 'persistentvolumeclaim "modelops-engines" not found' in built["message"]
    assert reasons(plan) == ["PodStuck"]
    assert plan.events[0].type == "Warning"
    assert plan.requeue_after is not None
    assert plan.requeue_after <= SETTINGS.reconcile_interval_seconds, "seen within one interval"
    assert reasons(world.step()) == [], "one Event, not one per look"
    assert plan.status["phase"] == "Building"


def test_a_build_pod_stuck_past_the_limit_fails_the_build_with_its_reason() -> None:
    world, job = building_world()
    world.job_pods[job] = (waiting("ImagePullBackOff", PULL),)
    world.step()
    world.tick(SETTINGS.stuck_seconds + 1)
    plan = world.step()
    assert plan.status["phase"] == "Failed"
    assert conds(plan.status)["EngineBuilt"] == ("False", "ImagePullBackOff")
    assert conds(plan.status)["Ready"] == ("False", "ImagePullBackOff")
    assert reasons(plan) == ["BuildFailed"]
    assert PULL in plan.events[0].message
    assert world.step().events == (), "reported once"
    world.body["metadata"]["annotations"]["modelops.dev/retry"] = "1"
    retry = world.step()
    assert job not in world.build_jobs, "a retry starts from a fresh Job"
    assert retry.status["phase"] == "Building"


def test_a_stuck_source_pod_in_the_tenants_namespace_is_surfaced_too() -> None:
    world = World(body())
    world.source = None
    world.step()
    (job,) = world.jobs
    world.job_pods[job] = (waiting("CreateContainerConfigError", 'secret "s3-reader" not found'),)
    plan = world.step()
    assert conds(plan.status)["EngineBuilt"] == ("False", "CreateContainerConfigError")
    assert reasons(plan) == ["PodStuck"]
    world.tick(SETTINGS.stuck_seconds + 1)
    plan = world.step()
    assert plan.status["phase"] == "Failed"
    assert 'secret "s3-reader" not found' in plan.status["message"]


def test_a_candidates_stuck_pods_show_in_the_rollout_then_roll_it_back() -> None:
    world = World(body())
    world.serve()
    world.body["spec"]["serving"]["instancesPerReplica"] = 2
    world.body["metadata"]["generation"] += 1
    world.step()
    world.pods["resnet-r2"] = [
        pending("resnet-r2-0", "0/3 nodes are available: 3 Insufficient cpu.")
    ]
    plan = world.step()
    assert plan.status["phase"] == "RollingOut"
    assert conds(plan.status)["RolledOut"] == ("False", "Unschedulable")
    assert "Insufficient cpu" in plan.status["message"]
    assert "PodStuck" in reasons(plan)
    world.tick(121)  # the spec's progressDeadlineSeconds
    plan = world.step()
    assert plan.status["phase"] == "RolledBack"
    assert conds(plan.status)["Degraded"] == ("True", "Unschedulable")
    assert "Insufficient cpu" in next(e.message for e in plan.events if e.reason == "RolledBack")
