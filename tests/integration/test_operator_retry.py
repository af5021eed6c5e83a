"""A reconcile refused by the write guard while this replica still leads is retried.

Under load (a thousand ModelDeployments on two cores) the event loop can run the Lease renewal
later than the renew deadline: for that moment the write guard refuses every write
(NotLeaderError), and the next round renews the Lease it still holds, with no lost-lease
transition that would reconcile everything again. Each reconcile refused in that window must
come back on its own backoff timer, or its ModelDeployment waits forever for its Job.
"""

from __future__ import annotations

import hashlib
import threading

from modelops_operator.k8s import resources as r
from modelops_operator.k8s.client import WriteGuard
from modelops_operator.k8s.errors import UnavailableError
from modelops_operator.k8s.lease import NotLeaderError
from modelops_operator.k8s.resources import Resource
from modelops_operator.render.names import source_job_name
from modelops_operator.settings import Settings
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import RunOperator, key_of, spec

NAMES = [f"gap-{i}" for i in range(6)]


class LateRenewal:
    """The elector's guard, refusing every write but the Lease's while `gap` is set (what
    `LeaderElector.guard` does between a missed renew deadline and the next renewal); every
    third refusal is a server error instead (the ordinary failure path, at the same time)."""

    def __init__(self, real: WriteGuard | None) -> None:
        self.real = real
        self.gap = threading.Event()
        self.refused = 0

    def __call__(self, resource: Resource) -> None:
        if self.gap.is_set() and resource is not r.LEASES:
            self.refused += 1
            if self.refused % 3 == 0:
                raise UnavailableError(503, "ServiceUnavailable", "kept failing", method="POST")
            raise NotLeaderError("renewal late: the renew deadline passed")
        if self.real is not None:
            self.real(resource)


async def test_reconciles_refused_during_a_late_renewal_are_retried(
    cluster: Cluster, run_operator: RunOperator, settings: Settings
) -> None:
    async with run_operator() as op:
        await eventually(lambda: op.leading, what="the operator leads")
        # One object converged before the gap, whose spec changes during it (an event
        # arriving while its reconciles are refused).
        await cluster.create_md("steady", spec())
        first = source_job_name("steady", key_of(cluster, "steady", settings))
        await eventually(lambda: cluster.get(r.JOBS, first), what="steady's first source Job")

        guard = LateRenewal(op.client.guard)
        op.client.guard = guard
        guard.gap.set()
        for name in NAMES:
            await cluster.create_md(name, spec(sha=hashlib.sha256(name.encode()).hexdigest()))
        await cluster.update_spec("steady", {"model": {"source": {"sha256": "ab" * 32}}})
        await eventually(lambda: guard.refused > len(NAMES), what="reconciles refused")
        await eventually(lambda: len(op.objects) == len(NAMES) + 1, what="all seen")
        guard.gap.clear()

        assert op.leading, "the elector never saw a lost Lease: no reconcile-everything"
        for name in [*NAMES, "steady"]:
            job = source_job_name(name, key_of(cluster, name, settings))
            await eventually(
                lambda job=job: cluster.get(r.JOBS, job), within=15.0, what=f"{name}'s source Job"
            )
