"""Leader election around kopf's run loop: kopf watches on every replica; the Lease decides
which one reconciles (k8s/lease.py), and the client refuses writes without it."""

from __future__ import annotations

import asyncio
import contextlib

from ..decide.lease import LeaseTiming
from ..k8s.lease import LeaderElector
from .runtime import Operator

DEFAULT_NAMESPACE = "default"


class Leadership:
    """The elector's task, wired to the operator's start/stop of reconciling."""

    def __init__(self, op: Operator) -> None:
        self._op = op
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.elector: LeaderElector | None = None

    def start(self) -> None:
        """Campaign (or, without leader election, lead at once)."""
        settings = self._op.settings
        if not settings.leader_election:
            self._op.start_leading()
            return
        timing = LeaseTiming(
            duration=settings.lease_duration_seconds,
            renew_deadline=settings.lease_renew_deadline_seconds,
            retry_period=settings.lease_retry_period_seconds,
        )
        self._task = asyncio.get_running_loop().create_task(self._campaign(timing))

    async def _campaign(self, timing: LeaseTiming) -> None:
        # The Lease's namespace defaults to the login's (the pod's own): wait for the login,
        # which kopf runs beside (not before) the startup handlers.
        stop = asyncio.ensure_future(self._stopped.wait())
        login = asyncio.ensure_future(self._op.logged_in.wait())
        await asyncio.wait({stop, login}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        login.cancel()
        if self._stopped.is_set():
            return
        settings = self._op.settings
        namespace = settings.lease_namespace or self._op.default_namespace or DEFAULT_NAMESPACE
        self.elector = LeaderElector(
            self._op.client,
            namespace,
            settings.lease_name,
            self._op.options.identity,
            timing=timing,
            on_started=self._op.start_leading,
            on_stopped=self._stop_leading,
        )
        self._op.elector = self.elector
        self._op.client.guard = self.elector.guard
        await self.elector.run(self._stopped)

    def _stop_leading(self) -> None:
        task = asyncio.get_running_loop().create_task(self._op.stop_leading())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self) -> None:
        """Stop reconciling, then hand the Lease over (the next replica starts at once)."""
        await self._op.stop_leading()
        self._stopped.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.gather(*self._stopping, return_exceptions=True)
