"""A child the API server rejects (422: a field it refuses, 403: a quota) is shown on the
ModelDeployment at once, in a Degraded condition and an Event carrying the server's message,
and nothing that was serving is lost."""

from __future__ import annotations

from pathlib import Path

import kmock

from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name
from modelops_operator.settings import Settings
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import build_and_serve, condition, phase, spec

INVALID = (
    'Deployment.apps "m-r2" is invalid: spec.template.spec.containers[0].resources.requests: '
    'Invalid value: "4": must be less than or equal to cpu limit of 2'
)


def refuse_new_deployments(api: kmock.KubernetesEmulator) -> None:
    """From now on the API server refuses every Deployment create, as admission would."""
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Invalid",
        "code": 422,
        "message": INVALID,
    }
    api["post /apis/apps/v1/namespaces/default/deployments"].override << 422 << status


async def test_a_rejected_revision_is_degraded_with_the_servers_message(
    api: kmock.KubernetesEmulator,
    cluster: Cluster,
    operator: Operator,
    store: Path,
    settings: Settings,
) -> None:
    await cluster.create_md("m", spec())
    await build_and_serve(cluster, store, settings, "m")
    before = cluster.get(r.DEPLOYMENTS, revision_name("m", 1))
    refuse_new_deployments(api)
    # A serving-only change: a new revision, no build.
    await cluster.update_spec("m", {"serving": {"resources": {"requests": {"cpu": "4"}}}})

    await eventually(lambda: phase(cluster, "m") == "Degraded", 15, "phase Degraded")
    degraded = condition(cluster, "m", "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "ChildRejected"
    assert INVALID in degraded["message"]
    assert f"Deployment/{revision_name('m', 2)}" in degraded["message"]
    events = [e for e in cluster.events("m") if e.get("reason") == "ChildRejected"]
    assert events
    assert INVALID in events[0]["message"]
    assert events[0]["type"] == "Warning"
    # Revision 1 serves on, untouched.
    assert cluster.get(r.DEPLOYMENTS, revision_name("m", 1)) == before
    assert cluster.md("m")["status"]["revision"]["current"] == 1
