"""Status maths: the phase and the four conditions, from what reconcile found."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api import (
    ConditionStatus,
    ConditionType,
    EngineStatus,
    ModelDeploymentStatus,
    ObjectMeta,
    Phase,
    find_condition,
    set_condition,
)

MESSAGE_LIMIT = 4096


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
    blocked: tuple[str, str] | None
    pinned: int | None
    desired: int
    ready: int
    rollout_reason: str = "RollingOut"
    serving_note: str | None = None  # why serving pods are missing (a stuck pod), if known
    # Scale to zero: asleep (0 pods wanted) or waking (a held request waits for the first pod);
    # the router holds requests, so neither is degraded.
    idle: bool = False
    routing_wait: str | None = None  # why clients do not reach the model as the mode promises


def phase_of(situation: Situation) -> Phase:
    """The one-word summary, most pressing first."""
    if situation.candidate is not None:
        return Phase.ROLLING_OUT
    if situation.failure is not None:
        return Phase.ROLLED_BACK if situation.current is not None else Phase.FAILED
    if situation.blocked is not None:
        return Phase.DEGRADED
    if situation.build_failed:
        return Phase.DEGRADED if situation.current is not None else Phase.FAILED
    if situation.building:
        return Phase.BUILDING
    if situation.current is None or not situation.current_matches:
        return Phase.PENDING
    if situation.idle:
        return Phase.IDLE
    if situation.ready < situation.desired:
        return Phase.DEGRADED
    if situation.routing_wait is not None:
        return Phase.PENDING
    return Phase.ROLLED_BACK if situation.pinned is not None else Phase.READY


def _why_not(situation: Situation) -> tuple[str, str]:
    """(reason, message) shared by Ready=False and RolledOut=False."""
    if situation.candidate is not None:
        return situation.rollout_reason, situation.rollout_message
    if situation.failure is not None:
        return situation.failure
    if situation.blocked is not None:
        return situation.blocked
    if situation.build_failed:
        return situation.engine_reason, situation.engine_message
    if situation.building:
        return "Building", situation.engine_message
    return "Pending", "waiting for the first revision"


def compose_status(
    old: ModelDeploymentStatus,
    situation: Situation,
    *,
    now: str,
    engine: EngineStatus | None,
    **fields: object,
) -> ModelDeploymentStatus:
    """The new status: phase, conditions (transition times kept), and the given fields."""
    gen = situation.generation
    phase = phase_of(situation)
    rolled_out = (
        situation.candidate is None
        and situation.failure is None
        and situation.blocked is None
        and situation.current_matches
    )
    serving = (
        f"{situation.ready}/{situation.desired} replicas of revision {situation.current} ready"
    )
    if situation.serving_note and situation.ready < situation.desired:
        serving += f": {situation.serving_note}"
    if phase == Phase.IDLE:
        serving = (
            f"revision {situation.current} is scaled to zero (no request for idleSeconds) or "
            f"waking up ({situation.ready}/{situation.desired} pods ready); the router holds "
            "requests while a pod starts"
        )
    conds = set_condition(
        old.conditions,
        ConditionType.ENGINE_BUILT,
        situation.engine_status,
        situation.engine_reason,
        situation.engine_message,
        now,
        gen,
    )
    if rolled_out:
        how = "Pinned" if situation.pinned is not None else "RolledOut"
        note = " (pinned by modelops.dev/rollback-to)" if situation.pinned is not None else ""
        conds = set_condition(
            conds,
            ConditionType.ROLLED_OUT,
            "True",
            how,
            f"revision {situation.current} serves{note}",
            now,
            gen,
        )
    else:
        reason, message = _why_not(situation)
        conds = set_condition(conds, ConditionType.ROLLED_OUT, "False", reason, message, now, gen)
    # Idle (asleep or waking) serves too: the router holds requests while a pod starts.
    enough = situation.ready >= situation.desired or phase == Phase.IDLE
    if rolled_out and enough and situation.routing_wait:
        ready_message = f"{serving}; {situation.routing_wait}"
        conds = set_condition(
            conds, ConditionType.READY, "False", "WaitingForRouter", ready_message, now, gen
        )
    elif rolled_out and enough:
        why = "Idle" if phase == Phase.IDLE else "Serving"
        conds = set_condition(conds, ConditionType.READY, "True", why, serving, now, gen)
        ready_message = serving
    elif rolled_out:
        ready_message = serving
        conds = set_condition(
            conds, ConditionType.READY, "False", "ReplicasUnavailable", serving, now, gen
        )
    else:
        reason, ready_message = _why_not(situation)
        conds = set_condition(conds, ConditionType.READY, "False", reason, ready_message, now, gen)
    if situation.failure is not None:
        degraded: tuple[str, str, str] = ("True", *situation.failure)
    elif situation.blocked is not None:
        degraded = ("True", *situation.blocked)
    elif situation.build_failed and situation.current is not None:
        degraded = (
            "True",
            "BuildFailed",
            f"{situation.engine_message}; revision {situation.current} serves on",
        )
    elif rolled_out and situation.ready < situation.desired and phase != Phase.IDLE:
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
            "message": ready_message[:MESSAGE_LIMIT],
            **fields,
        }
    )


def bounded(status: ModelDeploymentStatus) -> dict[str, Any]:
    """The status in wire form, validated once more: free text longer than the CRD allows is
    cut there (api.status), so the API server never rejects the patch."""
    return ModelDeploymentStatus.model_validate(status.to_wire()).to_wire()


def rejected_status(
    status: Mapping[str, Any], what: str, message: str, now: str, generation: int | None
) -> dict[str, Any]:
    """`status` (wire form) once the API server refused to write child `what`: Degraded=True
    with the server's message, phase Degraded while a revision serves, else Failed."""
    parsed = ModelDeploymentStatus.model_validate(status)
    text = f"the API server rejected {what}: {message}"
    conds = set_condition(
        parsed.conditions, ConditionType.DEGRADED, "True", "ChildRejected", text, now, generation
    )
    serving = parsed.revision.current is not None
    phase = Phase.DEGRADED if serving else Phase.FAILED
    return bounded(parsed.model_copy(update={"conditions": conds, "phase": phase, "message": text}))


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
            "message": message[:MESSAGE_LIMIT],
        }
    )
    return status, seen
