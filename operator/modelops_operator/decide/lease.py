"""PURE: leader election on a coordination.k8s.io/v1 Lease: acquire, renew, expire, fencing.

Clocks of two replicas disagree, so no replica ever compares the holder's renewTime with its own
wall clock. A candidate judges expiry by its own monotonic clock: a record (holder, renewTime,
resourceVersion) unchanged for leaseDurationSeconds since this candidate first saw it is
expired (client-go does the same). The holder, for its part, leads only until
`renew_deadline` after it SENT its last successful renewal: the renewal reached the server
after it was sent and every candidate saw it after that, so the holder stops writing
(duration - deadline) seconds before any candidate may take over, whatever the wall clocks say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class LeaseTiming:
    """Lease duration, how long a holder may go without renewing, how often everyone looks."""

    duration: float = 8.0
    renew_deadline: float = 5.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError("need 0 < retry period < renew deadline < lease duration")


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec as the API server holds it, and its resourceVersion."""

    holder: str = ""
    duration_seconds: int = 0
    transitions: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    version: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> LeaseRecord:
        """From a Lease object."""
        spec = body.get("spec") or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            version=(body.get("metadata") or {}).get("resourceVersion"),
        )

    def spec(self) -> dict[str, Any]:
        """The Lease's spec in wire form."""
        out: dict[str, Any] = {
            "holderIdentity": self.holder,  # "" when released: PUT replaces, a merge keeps None
            "leaseDurationSeconds": self.duration_seconds,
            "leaseTransitions": self.transitions,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
        }
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class Seen:
    """A record, and when (this process's monotonic clock) it was first seen as it is."""

    record: LeaseRecord
    at: float


def observe(previous: Seen | None, record: LeaseRecord, now: float) -> Seen:
    """The new observation: an unchanged record keeps the time it was first seen."""
    if previous is not None and _same(previous.record, record):
        return Seen(record, previous.at)
    return Seen(record, now)


def _same(a: LeaseRecord, b: LeaseRecord) -> bool:
    return (a.holder, a.renew_time, a.version) == (b.holder, b.renew_time, b.version)


def expired(seen: Seen, now: float) -> bool:
    """Free (no holder, or released), or unchanged for its whole duration since first seen."""
    if not seen.record.holder or seen.record.duration_seconds <= 0:
        return True
    return now >= seen.at + seen.record.duration_seconds


class Action(StrEnum):
    """What a candidate does with the Lease now."""

    CREATE = "create"  # there is no Lease: make it, holding it
    ACQUIRE = "acquire"  # it expired: take it over
    RENEW = "renew"  # it is ours: write a new renewTime
    WAIT = "wait"  # someone else holds it


@dataclass(frozen=True)
class Step:
    """The action and, unless waiting, the record to write."""

    action: Action
    record: LeaseRecord | None = None


def next_step(
    seen: Seen | None, me: str, now: float, wall: str, timing: LeaseTiming = LeaseTiming()
) -> Step:
    """What `me` does, given what it saw of the Lease (None: there is none) at `now`."""
    duration = max(1, round(timing.duration))
    if seen is None:
        record = LeaseRecord(me, duration, 0, wall, wall)
        return Step(Action.CREATE, record)
    current = seen.record
    if current.holder == me:
        return Step(Action.RENEW, replace(current, duration_seconds=duration, renew_time=wall))
    if expired(seen, now):
        record = replace(
            current,
            holder=me,
            duration_seconds=duration,
            transitions=current.transitions + 1,
            acquire_time=wall,
            renew_time=wall,
        )
        return Step(Action.ACQUIRE, record)
    return Step(Action.WAIT)


def released(record: LeaseRecord) -> LeaseRecord:
    """The record a holder writes when it stops: free for the next candidate at once."""
    return replace(record, holder="", duration_seconds=1)


def leading(renewed_at: float | None, now: float, timing: LeaseTiming = LeaseTiming()) -> bool:
    """Whether a holder whose last renewal was sent at `renewed_at` may still write (fencing)."""
    return renewed_at is not None and now < renewed_at + timing.renew_deadline
