"""Which steering request makes sense in which state, the one write for it, and what it does.

`kubectl modelops promote|abort|retry|pause|resume|rollback-to|set-weight` ask `steer` before
they write: it returns the merge patch of the ModelDeployment's annotations (never its spec)
and a sentence saying what the operator will do, or a refusal that says why not and what
would work instead. The operator's side of each annotation: decide/steering.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..api import (
    ConditionStatus,
    ConditionType,
    ModelDeployment,
    Phase,
    RevisionState,
    find_condition,
)
from ..render.common import (
    ANNOTATION_ABORT,
    ANNOTATION_PAUSE,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    ANNOTATION_ROLLBACK_TO,
    ANNOTATION_WEIGHT,
)
from .canary_steps import is_immediate, split_canary
from .history import SERVED_STATES, blocking_failure, parse_reason
from .steering import read_steering


class Verb(StrEnum):
    """A steering command."""

    PROMOTE = "promote"
    ABORT = "abort"
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK_TO = "rollback-to"
    SET_WEIGHT = "set-weight"


@dataclass(frozen=True)
class Request:
    """One steering command: its verb, its number (rollback-to, set-weight), a retry token."""

    verb: Verb
    number: int | None = None
    token: str = ""


@dataclass(frozen=True)
class Steer:
    """The annotations to write (None removes one) and what the operator will do."""

    annotations: dict[str, str | None]
    says: str


@dataclass(frozen=True)
class Refusal:
    """Why the request makes no sense now, and what would."""

    reason: str


def steer(md: ModelDeployment, request: Request, revisions: frozenset[int]) -> Steer | Refusal:
    """The write for `request` given the ModelDeployment as last read and the revisions whose
    Deployment exists; or why not."""
    status = md.status
    name = md.metadata.name
    if status.observed_generation is not None and status.observed_generation < (
        md.metadata.generation
    ):
        return Refusal(
            f"the operator has not yet seen generation {md.metadata.generation} of {name} "
            f"(status is for {status.observed_generation}): try again when it has"
        )
    if request.verb == Verb.RETRY:
        return _retry(md, request.token)
    if request.verb == Verb.ROLLBACK_TO:
        return _rollback_to(md, request.number, revisions)
    candidate = status.revision.candidate
    if candidate is None:
        return Refusal(
            f"nothing to {request.verb}: no revision of {name} is rolling out "
            f"(phase {status.phase})"
        )
    current = status.revision.current
    entry = next((e for e in status.history if e.revision == candidate), None)
    rollback = entry is not None and parse_reason(entry.reason)[0] == "ManualRollback"
    if rollback:
        return Refusal(
            f"revision {candidate} is a rollback-to that replaces revision {current} at once: "
            f"remove the {ANNOTATION_ROLLBACK_TO} annotation to return to the spec's revision"
        )
    if request.verb == Verb.ABORT:
        return _abort(md, candidate, current)
    if request.verb == Verb.PROMOTE:
        return _promote(md, candidate, current)
    immediate = is_immediate(md.spec.rollout, current is not None, False) or bool(
        status.rollout and status.rollout.cut_over
    )
    if immediate:
        return Refusal(
            f"revision {candidate} replaces {_what_serves(current)} at once, without canary "
            f"steps (strategy {md.spec.rollout.strategy}, a first revision or an accepted "
            f"signature change): there is no step to {request.verb}"
        )
    if request.verb == Verb.PAUSE:
        return Steer(
            {ANNOTATION_PAUSE: str(candidate)},
            f"revision {candidate} holds at {_where(md)} until resume, promote or abort; "
            "analyses go on and can still roll it back",
        )
    if request.verb == Verb.RESUME:
        steering = read_steering(md.metadata.annotations)
        if not steering.hold_reason(candidate):
            return Refusal(f"revision {candidate} is not paused and has no manual weight")
        return Steer(
            {ANNOTATION_PAUSE: None, ANNOTATION_WEIGHT: None},
            f"revision {candidate} goes on from {_where(md)} with the step's own weight",
        )
    return _set_weight(md, candidate, request.number)


def _what_serves(current: int | None) -> str:
    return f"revision {current}" if current is not None else "nothing (a first revision)"


def _where(md: ModelDeployment) -> str:
    steps = list(md.spec.rollout.canary.steps)
    index = min(md.status.rollout.step if md.status.rollout else 0, len(steps) - 1)
    return f"step {index + 1}/{len(steps)} ({steps[index]}%)"


def _abort(md: ModelDeployment, candidate: int, current: int | None) -> Steer | Refusal:
    if current is None:
        return Refusal(
            f"revision {candidate} is the first revision: nothing older serves to go back to; "
            "fix the spec, or delete the ModelDeployment"
        )
    return Steer(
        {ANNOTATION_ABORT: str(candidate), ANNOTATION_PAUSE: None, ANNOTATION_WEIGHT: None},
        f"revision {candidate} is rolled back now: revision {current} takes all replicas and "
        f"requests again; generation {md.metadata.generation} stays rolled back until retry "
        "or a spec change",
    )


def _promote(md: ModelDeployment, candidate: int, current: int | None) -> Steer:
    progress = md.status.rollout
    gate = "" if progress and progress.validated else "its validation run has passed and "
    after = f"; revision {current} then scales to 0" if current is not None else ""
    return Steer(
        {ANNOTATION_PROMOTE: str(candidate), ANNOTATION_PAUSE: None, ANNOTATION_WEIGHT: None},
        f"revision {candidate} skips its remaining canary steps: it takes all "
        f"{md.status.replicas or md.spec.serving.replicas} replicas and 100% of requests once "
        f"{gate}its pods are ready{after}",
    )


def _retry(md: ModelDeployment, token: str) -> Steer | Refusal:
    status = md.status
    name = md.metadata.name
    if md.metadata.annotations.get(ANNOTATION_ROLLBACK_TO, "").strip():
        return Refusal(
            f"{name} is pinned by {ANNOTATION_ROLLBACK_TO}: remove that annotation to return "
            "to the spec's revision"
        )
    retry = md.metadata.annotations.get(ANNOTATION_RETRY, "")
    blocked = blocking_failure(status.history, md.metadata.generation, retry)
    engine = find_condition(status.conditions, ConditionType.ENGINE_BUILT)
    ready = find_condition(status.conditions, ConditionType.READY)
    # A failed build is what Ready says is wrong (not an invalid spec, not a build under way).
    build_failed = (
        engine is not None
        and ready is not None
        and engine.status == ConditionStatus.FALSE
        and status.phase in (Phase.FAILED, Phase.DEGRADED)
        and ready.reason == engine.reason
    )
    if status.revision.candidate is not None or (blocked is None and not build_failed):
        return Refusal(
            f"nothing to retry: generation {md.metadata.generation} of {name} has no failed "
            f"build and no rolled-back revision (phase {status.phase})"
        )
    what = (
        f"revision {blocked.revision} ({parse_reason(blocked.reason)[0] or 'rolled back'}) is "
        "tried again as a new revision of the same engine"
        if blocked is not None
        else f"the failed build ({engine.reason if engine else ''}) runs again from its source"
    )
    return Steer(
        {ANNOTATION_RETRY: token},
        f"generation {md.metadata.generation} is tried again: {what}",
    )


def _rollback_to(
    md: ModelDeployment, number: int | None, revisions: frozenset[int]
) -> Steer | Refusal:
    status = md.status
    served = sorted(
        e.revision for e in status.history if e.state in SERVED_STATES and e.revision in revisions
    )
    choices = f"revisions that served and still have their Deployment: {served or 'none'}"
    if number is None or number not in served:
        return Refusal(f"revision {number} cannot serve again; {choices}")
    pinned = md.metadata.annotations.get(ANNOTATION_ROLLBACK_TO, "").strip()
    entry = next(e for e in status.history if e.revision == number)
    if number == status.revision.current and entry.state == RevisionState.SERVING and not pinned:
        return Refusal(f"revision {number} is what serves now; {choices}")
    return Steer(
        {ANNOTATION_ROLLBACK_TO: str(number), ANNOTATION_PAUSE: None, ANNOTATION_WEIGHT: None},
        f"revision {number} replaces {_what_serves(status.revision.current)} at once (no "
        "canary steps, no validation run: it served before); the pin holds until you remove "
        f"it: kubectl annotate md/{md.metadata.name} {ANNOTATION_ROLLBACK_TO}-",
    )


def _set_weight(md: ModelDeployment, candidate: int, number: int | None) -> Steer | Refusal:
    if number is None or not 0 <= number <= 100:
        return Refusal(f"set-weight takes a percent from 0 to 100, not {number}")
    desired = md.status.replicas or md.spec.serving.replicas
    new, old = split_canary(desired, number)
    progress = md.status.rollout
    gate = "" if progress and progress.validated else " (once its validation run has passed)"
    return Steer(
        {ANNOTATION_WEIGHT: f"{candidate}:{number}"},
        f"revision {candidate} holds at {number}% of requests{gate} on {new} of {desired} "
        f"replicas ({old} stay on the serving revision) until resume, promote or abort",
    )
