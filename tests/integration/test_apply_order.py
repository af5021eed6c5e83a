"""The Applier's order against kmock: child writes, then the status, then `on_status` (the route
feed publishes the new table), then the plan's Events: a table never waits for the Events."""

from __future__ import annotations

from typing import Any

from modelops_operator.decide.inputs import Observed
from modelops_operator.decide.plan import Apply, Emit, EventReason, Plan
from modelops_operator.k8s import resources as r
from modelops_operator.k8s.apply import Applier
from modelops_operator.k8s.cache import ChildCache
from modelops_operator.k8s.client import Credentials, KubeClient
from modelops_operator.k8s.events import EventRecorder
from tests.support.apiserver import FaithfulEmulator
from tests.support.kubernetes_emulator import Cluster
from tests.support.operator_flow import spec


async def test_the_status_and_its_table_come_before_the_events(
    api: FaithfulEmulator, cluster: Cluster
) -> None:
    async def connect() -> Credentials:
        return Credentials(server=str(api.url).rstrip("/"))

    body = await cluster.create_md("m", spec())
    client = KubeClient(connect)
    applier = Applier(client, EventRecorder(client), ChildCache([r.CONFIGMAPS]))
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "m-router", "namespace": "default"},
        "data": {"routes.json": "{}"},
    }
    plan = Plan(
        actions=(
            Emit(EventReason.TRAFFIC_SHIFTED, "requests: revision 1 100%"),
            Apply(config),
        ),
        status={"phase": "Ready"},
    )
    seen_at_publish: list[tuple[str | None, int]] = []

    def published() -> None:
        status = (cluster.md("m").get("status") or {}).get("phase")
        seen_at_publish.append((status, len(cluster.events("m"))))

    done = await applier.apply(body, Observed(), plan, published)
    await client.close()
    assert done.status_patched
    assert seen_at_publish == [("Ready", 0)], "published after the status, before the Event"
    assert [e["reason"] for e in cluster.events("m")] == ["TrafficShifted"]
    assert cluster.get(r.CONFIGMAPS, "m-router") is not None
