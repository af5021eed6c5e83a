"""Two operator replicas and one Lease: only the holder writes; a holder that stops renewing is
replaced; a paused old holder writes nothing after it lost the Lease (fencing)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.k8s.lease import NotLeaderError
from modelops_operator.render.names import source_job_name
from modelops_operator.settings import Settings
from tests.support.kubernetes_emulator import Cluster, eventually, rbac_call
from tests.support.operator_flow import RunOperator, in_operator, key_of, phase, spec

WRITES = ("create", "patch", "delete")


@pytest.fixture
def settings(store: Path) -> Settings:
    """Short Lease timings so that a takeover takes about two seconds."""
    return Settings(
        store_mount_path=str(store),
        namespaces=[],
        log_format="plain",
        lease_duration_seconds=2.0,
        lease_renew_deadline_seconds=1.2,
        lease_retry_period_seconds=0.4,
    )


def writes_of(cluster: Cluster, identity: str) -> int:
    """Writes (other than to the Lease) that one replica sent."""
    return sum(
        1
        for q in cluster.requests()
        if str(q.headers.get("User-Agent", "")) == f"modelops-operator/{identity}"
        and (call := rbac_call(q)) is not None
        and call[2] in WRITES
        and call[1] != "leases"
    )


def holder(cluster: Cluster) -> str | None:
    """holderIdentity of the operator's Lease."""
    lease = cluster.get(r.LEASES, "modelops-operator")
    return None if lease is None else lease["spec"].get("holderIdentity")


def deployment_series(operator: Operator) -> list[str]:
    """The per-ModelDeployment samples on an operator's /metrics."""
    text = operator.metrics.render().decode()
    return [line for line in text.splitlines() if 'modeldeployment="h"' in line]


async def test_one_leader_writes_and_a_paused_holder_is_replaced_and_fenced(
    cluster: Cluster, run_operator: RunOperator, settings: Settings
) -> None:
    async with run_operator(identity="op-a") as a:
        await eventually(lambda: a.leading, what="a leads")
        async with run_operator(identity="op-b") as b:
            await cluster.create_md("h", spec())
            first = source_job_name("h", key_of(cluster, "h", settings))
            await eventually(lambda: cluster.get(r.JOBS, first), what="first source Job")
            await eventually(lambda: phase(cluster, "h") == "Building", what="Building")
            assert not b.leading
            assert writes_of(cluster, "op-b") == 0, "a standby writes nothing"
            # The standby follows every status (the route feed answers from it).
            await eventually(
                lambda: (
                    (b.latest(("default", "h")) or {}).get("status", {}).get("phase") == "Building"
                ),
                what="b sees the status",
            )
            # Per-ModelDeployment series come from the leader only (no double counting).
            assert deployment_series(a)
            assert not deployment_series(b)

            # The holder is paused (as by SIGSTOP) for longer than the Lease lasts.
            assert a.loop is not None
            a.loop.call_soon_threadsafe(time.sleep, 3.5)
            paused_at = time.monotonic()
            await asyncio.sleep(0.1)
            before = writes_of(cluster, "op-a")
            # Queued behind the pause: the first thing the old holder tries when it wakes up.
            probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}}
            late_write = in_operator(a, a.client.create(r.CONFIGMAPS, "default", probe))
            await cluster.update_spec("h", {"model": {"source": {"sha256": "d" * 64}}})
            await eventually(lambda: b.leading, within=6, what="b takes over")
            took = time.monotonic() - paused_at
            assert took < 2.0 + 2 * 0.4 + 1.5, f"takeover took {took:.1f} s"
            assert holder(cluster) == "op-b"
            second = source_job_name("h", key_of(cluster, "h", settings))
            await eventually(lambda: cluster.get(r.JOBS, second), what="second source Job")

            with pytest.raises(NotLeaderError):
                await late_write
            await eventually(lambda: not a.leading, what="a stepped down")
            await asyncio.sleep(0.5)  # a's queued watch events and triggers run now
            assert writes_of(cluster, "op-a") == before, "the old holder wrote after losing"
            assert cluster.get(r.CONFIGMAPS, "probe") is None
            assert cluster.created("jobs").count(second) == 1, "no duplicate child"
            # The old holder's view (its route feed) follows the new leader's statuses.
            await eventually(
                lambda: (
                    (a.latest(("default", "h")) or {}).get("status")
                    == cluster.md("h").get("status")
                ),
                what="a follows b's status",
            )
            assert holder(cluster) == "op-b"
            assert deployment_series(b)
            assert not deployment_series(a), "a standby drops its per-ModelDeployment series"


async def test_a_clean_stop_hands_the_lease_over_at_once(
    cluster: Cluster, run_operator: RunOperator
) -> None:
    async with run_operator(identity="op-a") as a:
        await eventually(lambda: a.leading, what="a leads")
        async with run_operator(identity="op-b") as b:
            await asyncio.sleep(0.5)
            assert not b.leading
            stopped: Operator = a
    # a released the Lease on its way out; b is gone too: the Lease is free.
    assert stopped.closed
    assert holder(cluster) in ("", None)
    async with run_operator(identity="op-c") as c:
        started = time.monotonic()
        await eventually(lambda: c.leading, what="c leads")
        assert time.monotonic() - started < 1.0, "no wait for an expiry"
