"""k8s/trim.py on objects shaped like a real API server's (tests/support/server_shapes.py): the
cache keeps a fraction of each, and every rule that reads a cached object answers the same on
the trimmed copy as on the whole object."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from modelops_operator.decide.jobs import job_state
from modelops_operator.decide.pod_health import crash_loop, stuck
from modelops_operator.decide.writes import unchanged, with_applied_hash
from modelops_operator.k8s.cache import deep_size
from modelops_operator.k8s.observe import job_finished, owned_by, termination_message
from modelops_operator.k8s.trim import trim
from modelops_operator.render.service import render_service
from tests.support.render_cases import make_md
from tests.support.server_shapes import job_pod, job_status, shape_write

Obj = dict[str, Any]
AGENT = "modelops-operator/0.3 (kopf)"


def created(plural: str, manifest: Obj) -> Obj:
    """The object as the API server stores a create of `manifest` (defaults, managedFields)."""
    body = copy.deepcopy(manifest)
    body["metadata"].setdefault("uid", str(uuid.uuid4()))
    body["metadata"]["resourceVersion"] = "7"
    shape_write(plural, "POST", body, AGENT, None)
    return body


def a_job() -> Obj:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "m-source-1", "namespace": "ml", "labels": {"a": "b"}},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "stage", "image": "builder:1", "args": ["stage", "--x", "y"]}
                    ],
                },
            },
        },
    }
    return created("jobs", job)


def test_a_server_shaped_job_and_its_pod_keep_a_fraction_and_what_the_rules_read() -> None:
    job = a_job()
    assert job["metadata"]["managedFields"], "shaped as a real server's"
    pod = job_pod(job, "10.0.0.5")
    pod["status"]["containerStatuses"][0]["state"] = {
        "terminated": {"exitCode": 1, "reason": "Error", "message": '{"ok": false}'}
    }
    job["status"] = {
        **job_status(),
        "failed": 1,
        "conditions": [{"type": "Failed", "status": "True"}],
    }
    small_job, small_pod = trim("jobs", job), trim("pods", pod)
    assert small_job["spec"] == {"backoffLimit": 2}
    assert "spec" not in small_pod
    assert "managedFields" not in small_pod["metadata"]
    assert deep_size(small_job) < deep_size(job) / 3
    assert deep_size(small_pod) < deep_size(pod) / 3
    uid = job["metadata"]["uid"]
    assert termination_message([small_pod], uid) == '{"ok": false}'
    assert job_state(small_job) != job_state(None)
    for rule in (
        lambda j, p: job_state(j),
        lambda j, p: job_finished(j),
        lambda j, p: owned_by(p, uid, "Job"),
        lambda j, p: termination_message([p], uid),
        lambda j, p: stuck([p]),
        lambda j, p: crash_loop([p]),
    ):
        assert rule(small_job, small_pod) == rule(job, pod)


@pytest.mark.parametrize("router", [True, False])
def test_a_trimmed_service_compares_as_the_whole_one(router: bool) -> None:
    manifest = render_service(make_md(), {"x": "y"} if router else None)
    stored = created("services", with_applied_hash(manifest)[0])
    small = trim("services", stored)
    assert set(small["spec"]) == {"selector", "ports"}
    assert unchanged(small, manifest) is unchanged(stored, manifest) is True


def test_configmap_data_goes_but_its_write_is_still_skipped() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "m-router", "namespace": "ml"},
        "data": {"haproxy.cfg": "x" * 4000},
    }
    stored = created("configmaps", with_applied_hash(manifest)[0])
    small = trim("configmaps", stored)
    assert "data" not in small
    assert unchanged(small, manifest)
    assert not unchanged(small, {**manifest, "data": {"haproxy.cfg": "changed"}})


def test_deployments_are_kept_whole_but_managed_fields() -> None:
    deployment = created(
        "deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "m-r1", "namespace": "ml"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "t"}]}}},
        },
    )
    small = trim("deployments", deployment)
    assert small["spec"] == deployment["spec"]
    assert "managedFields" not in small["metadata"]
