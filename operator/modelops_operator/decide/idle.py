"""PURE: scale to zero (spec.scaling.minReplicas 0): when the serving revision sleeps and wakes.

- Asleep after `idleSeconds` without a request the router counted (nor held), and only while
  nothing else runs: no candidate (a canary or its validation run) and no other revision with
  pods (a rollback or a promotion still draining). Unknown activity (the router not read yet)
  never puts it to sleep.
- Awake again on demand the router reports (a request it holds) or when a rollout starts (the
  candidate then starts at one pod).
- The router's reports of that wake become Events: `WokeUp` with the cold start (the first held
  request to its response) and `ColdStartTimedOut` for requests held past
  coldStartTimeoutSeconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..api import (
    Condition,
    ConditionType,
    IdleStatus,
    ModelDeploymentSpec,
    TrafficMode,
    set_condition,
)
from .clock import parse_time, rfc3339
from .plan import Emit, EventReason


@dataclass(frozen=True)
class Activity:
    """What the router said about requests since the last reconcile (telemetry gathers it).

    last_request: the newest moment a request went through the router (or the first reading,
    when nothing is known before it); None while the router was never read. held_since: the
    oldest request the router holds now (a wake signal). served: hold times of held requests
    that got their response. timed_out: held requests answered 503 / UNAVAILABLE.
    """

    last_request: datetime | None = None
    held_since: datetime | None = None
    served: tuple[float, ...] = field(default=())
    timed_out: int = 0


@dataclass(frozen=True)
class IdleDecision:
    """Whether the serving revision runs 0 pods, status.idle, Events, when to look again."""

    asleep: bool
    status: IdleStatus | None
    events: tuple[Emit, ...] = ()
    woke: bool = False
    requeue_after: float | None = None

    @property
    def waking(self) -> bool:
        """A held request woke the revision and has not been answered yet."""
        return (
            self.status is not None
            and self.status.woke_at is not None
            and self.status.cold_start_seconds is None
        )


AWAKE = IdleDecision(asleep=False, status=None)


def scales_to_zero(spec: ModelDeploymentSpec) -> bool:
    """minReplicas 0 in Router mode (the CRD refuses it in the other modes)."""
    scaling = spec.scaling
    return (
        scaling is not None
        and scaling.scales_to_zero
        and spec.rollout.traffic.mode == TrafficMode.ROUTER
    )


def decide_idle(
    spec: ModelDeploymentSpec,
    old: IdleStatus | None,
    activity: Activity,
    current: int | None,
    busy: bool,
    now: datetime,
) -> IdleDecision:
    """Sleep, stay asleep, wake, or stay awake; `busy`: a rollout, validation run or rollback
    runs (another revision has pods, or there is a candidate)."""
    if not scales_to_zero(spec) or current is None or spec.scaling is None:
        return AWAKE
    idle_seconds = spec.scaling.idle_seconds
    status = old or IdleStatus()
    events: list[Emit] = []
    if activity.served and status.woke_at is not None and status.cold_start_seconds is None:
        # The longest hold is the first held request's: the cold start users felt.
        cold = round(max(activity.served), 3)
        status = status.model_copy(update={"cold_start_seconds": cold})
        events.append(
            Emit(
                EventReason.WOKE_UP,
                f"revision {current} woke up: the first held request was answered after "
                f"{cold:.1f} s",
            )
        )
    if activity.timed_out:
        timeout = spec.scaling.cold_start_timeout_seconds
        events.append(
            Emit(
                EventReason.COLD_START_TIMED_OUT,
                f"{activity.timed_out} request(s) waited coldStartTimeoutSeconds ({timeout} s) "
                f"for revision {current} to wake up and got 503 / UNAVAILABLE; the pod is "
                "still starting (see the revision's pods), or raise coldStartTimeoutSeconds",
            )
        )
    if status.since is not None:
        if activity.held_since is None and not busy:
            return IdleDecision(True, status, tuple(events))
        woke_at = activity.held_since or now
        woke = IdleStatus(since=None, woke_at=rfc3339(woke_at), cold_start_seconds=None)
        return IdleDecision(False, woke, tuple(events), woke=True)
    quiet_since = _latest(activity.last_request, parse_time(status.woke_at))
    if busy or activity.last_request is None or quiet_since is None:
        return IdleDecision(False, status, tuple(events))
    quiet = (now - quiet_since).total_seconds()
    if activity.held_since is not None or quiet < idle_seconds:
        return IdleDecision(False, status, tuple(events), requeue_after=idle_seconds - quiet)
    asleep = status.model_copy(update={"since": rfc3339(now)})
    events.append(
        Emit(
            EventReason.SCALED_TO_ZERO,
            f"no request through the router for {idle_seconds} s: revision {current} scaled to 0 "
            "pods; the router holds the next request while a pod starts",
        )
    )
    return IdleDecision(True, asleep, tuple(events))


def _latest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def idle_condition(
    conditions: list[Condition],
    spec: ModelDeploymentSpec,
    decision: IdleDecision,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """ScaledToZero: True while asleep, False while awake (with the last cold start); absent
    without minReplicas 0."""
    if not scales_to_zero(spec):
        return [c for c in conditions if c.type != ConditionType.SCALED_TO_ZERO]
    status = decision.status or IdleStatus()
    if decision.asleep:
        message = "the serving revision runs 0 pods; the router holds the next request"
        return set_condition(
            conditions, ConditionType.SCALED_TO_ZERO, "True", "Idle", message, now, generation
        )
    if status.cold_start_seconds is not None:
        reason = "WokeUp"
        message = f"woke up on a request; cold start {status.cold_start_seconds:.1f} s"
    elif status.woke_at is not None:
        reason, message = "WakingUp", "a held request woke the serving revision; a pod starts"
    else:
        reason, message = "Serving", "requests arrive; idle after spec.scaling.idleSeconds"
    return set_condition(
        conditions, ConditionType.SCALED_TO_ZERO, "False", reason, message, now, generation
    )
