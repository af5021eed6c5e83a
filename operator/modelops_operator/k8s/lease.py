"""Leader election: keep (or wait for) the operator's Lease, and refuse writes without it.

Every replica runs kopf's watches (caches warm, the route feed answering); only the holder of
the Lease reconciles. The holder renews every retry period with one merge-patch carrying the
resourceVersion it wrote last as precondition (no GET; as safe as an update); a candidate GETs
the Lease every retry period. `guard` is the client's write guard: every write but the Lease's
own raises NotLeaderError unless this process renewed recently enough (decide/lease.py), so a
holder that was paused (SIGSTOP, a long GC, a frozen node) and lost the Lease meanwhile writes
nothing when it wakes up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..decide.lease import (
    Action,
    LeaseRecord,
    LeaseTiming,
    Seen,
    leading,
    next_step,
    observe,
    released,
)
from .client import KubeClient
from .errors import ApiError, ConflictError, NotFoundError
from .resources import LEASES, Resource

logger = logging.getLogger(__name__)
DEFAULT_TIMING = LeaseTiming()


class NotLeaderError(Exception):
    """This process does not hold the Lease (or no longer knows that it does): no writes."""


def micro_time(at: datetime | None = None) -> str:
    """A MicroTime (RFC 3339 with microseconds), as Lease timestamps are written."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for one Lease and calls back when leadership starts and stops."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        timing: LeaseTiming = DEFAULT_TIMING,
        clock: Callable[[], float] = time.monotonic,
        on_started: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
    ) -> None:
        self._client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self.timing, self._clock = timing, clock
        self._on_started, self._on_stopped = on_started, on_stopped
        self._seen: Seen | None = None
        self._mine: LeaseRecord | None = None  # the record we wrote last, while we hold it
        self._renewed_at: float | None = None
        self._was_leading = False
        self.transitions = 0  # times this process became the leader

    def is_leader(self) -> bool:
        """Whether this process may write now."""
        return leading(self._renewed_at, self._clock(), self.timing)

    def guard(self, resource: Resource) -> None:
        """The client's write guard."""
        if resource is not LEASES and not self.is_leader():
            raise NotLeaderError(f"{self.identity} does not hold Lease {self.name}")

    async def run(self, stopped: asyncio.Event) -> None:
        """Campaign and renew until `stopped`; then release the Lease if held."""
        try:
            while not stopped.is_set():
                await self.round()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), self.timing.retry_period)
        finally:
            await self.release()

    async def round(self) -> None:
        """One look at the Lease: renew, acquire, or wait; then the leadership callbacks."""
        sent = self._clock()
        try:
            if self._mine is not None and self.is_leader():
                await self._renew(sent)
            else:
                await self._campaign(sent)
        except Exception as exc:  # the API unreachable, a 403, a bug: look again next period
            logger.warning("lease %s/%s: %s", self.namespace, self.name, exc)
        self._transition()

    async def _renew(self, sent: float) -> None:
        assert self._mine is not None
        record = next_step(Seen(self._mine, sent), self.identity, sent, micro_time(), self.timing)
        try:
            await self._write(record.record, sent, create=False)
        except (ConflictError, NotFoundError):
            self._mine = None  # someone else wrote it: look again
            await self._campaign(self._clock())

    async def _campaign(self, sent: float) -> None:
        body = await self._client.get_or_none(LEASES, self.namespace, self.name)
        if body is not None:
            self._seen = observe(self._seen, LeaseRecord.from_body(body), sent)
        else:
            self._seen = None
        step = next_step(self._seen, self.identity, sent, micro_time(), self.timing)
        if step.action == Action.WAIT:
            self._mine = None
            return
        try:
            await self._write(step.record, sent, create=step.action == Action.CREATE)
        except ConflictError:
            self._mine = None  # another candidate was faster
        if step.action == Action.ACQUIRE and self._mine is not None:
            holder = body and LeaseRecord.from_body(body).holder
            logger.info("acquired lease %s/%s (from %r)", self.namespace, self.name, holder)

    async def _write(self, record: LeaseRecord | None, sent: float, *, create: bool) -> None:
        assert record is not None
        if create:
            body: dict[str, Any] = {
                "apiVersion": LEASES.api_version,
                "kind": LEASES.kind,
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": record.spec(),
            }
            stored = await self._client.create(LEASES, self.namespace, body)
        else:
            # Only the version this process saw: a write by another candidate since is a 409.
            stored = await self._client.merge_patch(
                LEASES,
                self.namespace,
                self.name,
                {"spec": record.spec()},
                resource_version=record.version,
            )
        self._mine = LeaseRecord.from_body(stored)
        self._seen = Seen(self._mine, sent)
        self._renewed_at = sent

    def _transition(self, *, releasing: bool = False) -> None:
        now_leading = self._mine is not None and self.is_leader()
        if now_leading and not self._was_leading:
            self.transitions += 1
            self._was_leading = True
            logger.info("leading as %s (lease %s/%s)", self.identity, self.namespace, self.name)
            self._on_started()
        elif not now_leading and self._was_leading:
            self._was_leading = False
            self._renewed_at = None
            if releasing:
                logger.info("released lease %s/%s", self.namespace, self.name)
            else:
                logger.warning("lost lease %s/%s: stopped leading", self.namespace, self.name)
            self._on_stopped()

    async def release(self) -> None:
        """Hand the Lease over at once (a clean stop): the next candidate need not wait."""
        mine, self._mine = self._mine, None
        if mine is None or not self.is_leader():
            self._transition(releasing=True)
            return
        try:
            # Best effort, and short: a stopping pod must not wait on an unreachable server.
            await asyncio.wait_for(
                self._write(released(mine), self._clock(), create=False),
                self.timing.retry_period,
            )
        except (ApiError, OSError, TimeoutError) as exc:
            logger.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
        self._mine, self._renewed_at = None, None
        self._transition(releasing=True)
