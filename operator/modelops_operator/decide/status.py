"""Status maths: the bounded revision history, the phase and the four conditions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..api import (
    HISTORY_LIMIT,
    ConditionStatus,
    ConditionType,
    EngineStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    ObjectMeta,
    Phase,
    RevisionState,
    find_condition,
    set_condition,
)

REASON_LIMIT = 1024
# History reasons read "Reason [retry=TOKEN]: message"; the token is the value of the
# `modelops.dev/retry` annotation the attempt ran under, so a new value starts a new attempt.
_REASON = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?: \[retry=([^\]]*)\])?: ")
FAILED_STATES = (RevisionState.ROLLED_BACK, RevisionState.FAILED)


def retry_token(value: str) -> str:
    """The retry annotation value as stored in a history reason (no brackets, bounded)."""
    return value.replace("[", "").replace("]", "")[:63]


def history_reason(reason: str, message: str, token: str = "") -> str:
    """`Reason [retry=TOKEN]: message`, bounded to the schema's 1024 characters."""
    tag = f" [retry={retry_token(token)}]" if token else ""
    return f"{reason}{tag}: {message}"[:REASON_LIMIT]


def parse_reason(text: str | None) -> tuple[str, str, str]:
    """(Reason, retry token, message) of a history reason written by history_reason."""
    match = _REASON.match(text or "")
    if not match:
        return "", "", text or ""
    return match.group(1), match.group(2) or "", (text or "")[match.end() :]


def upsert(
    history: Sequence[HistoryEntry],
    revision: int,
    *,
    key: str | None = None,
    generation: int | None = None,
    state: RevisionState,
    reason: str | None,
    time: str,
) -> list[HistoryEntry]:
    """History with the revision's entry set (added when new), oldest dropped beyond 10."""
    old = next((e for e in history if e.revision == revision), None)
    entry = HistoryEntry(
        revision=revision,
        engine_key=key if key is not None else (old.engine_key if old else ""),
        generation=generation if generation is not None else (old.generation if old else 0),
        state=state,
        reason=reason,
        time=time,
    )
    out = sorted([e for e in history if e.revision != revision] + [entry], key=lambda e: e.revision)
    return out[-HISTORY_LIMIT:]


def blocking_failure(
    history: Sequence[HistoryEntry], generation: int, retry: str
) -> HistoryEntry | None:
    """The newest rolled-back or failed attempt at this generation under this retry value."""
    for entry in reversed(history):
        same_attempt = parse_reason(entry.reason)[1] == retry_token(retry)
        if entry.state in FAILED_STATES and entry.generation == generation and same_attempt:
            return entry
    return None


def next_revision(history: Sequence[HistoryEntry], *numbers: int | None) -> int:
    """One more than any revision number ever seen, so numbers only grow."""
    seen = [e.revision for e in history] + [n for n in numbers if n is not None]
    return max(seen, default=0) + 1


@dataclass(frozen=True)
class Situation:
    """What reconcile found, reduced to what the phase and conditions depend on."""

    generation: int
    engine_status: ConditionStatus
    engine_reason: str
    engine_message: str
    building: bool
    build_failed: bool
    current: int | None
    current_matches: bool
    candidate: int | None
    rollout_message: str
    failure: tuple[str, str] | None
    pinned: int | None
    desired: int
    ready: int


def phase_of(s: Situation) -> Phase:
    """The one-word summary, most pressing first."""
    if s.candidate is not None:
        return Phase.ROLLING_OUT
    if s.failure is not None:
        return Phase.ROLLED_BACK if s.current is not None else Phase.FAILED
    if s.build_failed:
        return Phase.DEGRADED if s.current is not None else Phase.FAILED
    if s.building:
        return Phase.BUILDING
    if s.current is None or not s.current_matches:
        return Phase.PENDING
    if s.ready < s.desired:
        return Phase.DEGRADED
    return Phase.ROLLED_BACK if s.pinned is not None else Phase.READY


def _why_not(s: Situation) -> tuple[str, str]:
    """(reason, message) shared by Ready=False and RolledOut=False."""
    if s.candidate is not None:
        return "RollingOut", s.rollout_message
    if s.failure is not None:
        return s.failure
    if s.build_failed:
        return s.engine_reason, s.engine_message
    if s.building:
        return "Building", s.engine_message
    return "Pending", "waiting for the first revision"


def compose_status(
    old: ModelDeploymentStatus,
    s: Situation,
    *,
    now: str,
    engine: EngineStatus | None,
    **fields: object,
) -> ModelDeploymentStatus:
    """The new status: phase, conditions (transition times kept), and the given fields."""
    gen = s.generation
    phase = phase_of(s)
    rolled_out = s.candidate is None and s.failure is None and s.current_matches
    serving = f"{s.ready}/{s.desired} replicas of revision {s.current} ready"
    conds = set_condition(
        old.conditions,
        ConditionType.ENGINE_BUILT,
        s.engine_status,
        s.engine_reason,
        s.engine_message,
        now,
        gen,
    )
    if rolled_out:
        how = "Pinned" if s.pinned is not None else "RolledOut"
        note = " (pinned by modelops.dev/rollback-to)" if s.pinned is not None else ""
        conds = set_condition(
            conds,
            ConditionType.ROLLED_OUT,
            "True",
            how,
            f"revision {s.current} serves{note}",
            now,
            gen,
        )
    else:
        reason, message = _why_not(s)
        conds = set_condition(conds, ConditionType.ROLLED_OUT, "False", reason, message, now, gen)
    if rolled_out and s.ready >= s.desired:
        conds = set_condition(conds, ConditionType.READY, "True", "Serving", serving, now, gen)
        ready_message = serving
    elif rolled_out:
        ready_message = serving
        conds = set_condition(
            conds, ConditionType.READY, "False", "ReplicasUnavailable", serving, now, gen
        )
    else:
        reason, ready_message = _why_not(s)
        conds = set_condition(conds, ConditionType.READY, "False", reason, ready_message, now, gen)
    if s.failure is not None:
        degraded: tuple[str, str, str] = ("True", *s.failure)
    elif s.build_failed and s.current is not None:
        degraded = ("True", "BuildFailed", f"{s.engine_message}; revision {s.current} serves on")
    elif rolled_out and s.ready < s.desired:
        degraded = ("True", "ReplicasUnavailable", serving)
    else:
        degraded = ("False", "AsExpected", "nothing is degraded")
    conds = set_condition(conds, ConditionType.DEGRADED, *degraded, now, gen)
    return old.model_copy(
        update={
            "observed_generation": gen,
            "phase": phase,
            "conditions": conds,
            "engine": engine,
            "message": ready_message[:4096],
            **fields,
        }
    )


def invalid_status(
    meta: ObjectMeta, old: ModelDeploymentStatus, message: str, now: str
) -> tuple[ModelDeploymentStatus, bool]:
    """Status of a spec the schema let through but the models reject: Failed, Ready=False.

    Returns the status and whether the same InvalidSpec message was already reported.
    """
    prior = find_condition(old.conditions, ConditionType.READY)
    seen = prior is not None and (prior.reason, prior.message) == ("InvalidSpec", message)
    conds = set_condition(
        old.conditions, ConditionType.READY, "False", "InvalidSpec", message, now, meta.generation
    )
    status = old.model_copy(
        update={
            "observed_generation": meta.generation,
            "phase": Phase.FAILED,
            "conditions": conds,
            "message": message[:4096],
        }
    )
    return status, seen
