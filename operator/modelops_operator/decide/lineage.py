"""How the tracked revisions move: adopt, supersede, start, step, promote, roll back.

Each function takes the facts and the lineage so far and returns a new lineage (frozen) with the
Events that explain the move; none of them writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..api import (
    ConditionType,
    RevisionState,
    RolloutProgress,
    ValidationStatus,
    find_condition,
)
from ..render.common import ANNOTATION_ABORT, ANNOTATION_ROLLBACK_TO
from ..render.names import revision_name
from ..render.revision import render_configmap, render_deployment
from .build import BuildOutcome, short_key
from .build_results import store_manifest
from .canary_steps import is_immediate
from .facts import Facts, Lineage, serving_key
from .history import REASON_LIMIT, history_reason, next_revision, upsert
from .plan import Action, Emit, EventReason
from .pod_health import stuck
from .revisions import RevisionView
from .rollout import Outcome, StepInput, step_rollout, steps_of
from .signature import differences, signature_digest
from .steering import record_steering, steered_steps
from .validation import ValidationState, start_job, validation_status, view_validation


@dataclass(frozen=True)
class Moved:
    """A lineage after one step of the rollout, and what the step asks of the children."""

    lineage: Lineage
    events: tuple[Emit, ...] = ()
    targets: Mapping[int, int] = field(default_factory=dict)
    new_objects: tuple[dict[str, Any], ...] = ()
    requeue_after: float | None = None
    failure: tuple[str, str] | None = None
    message: str = ""
    canary_weight: int = 0
    actions: tuple[Action, ...] = ()
    validation: ValidationStatus | None = None
    blocked: tuple[str, str] | None = None


def adopt_orphan(facts: Facts, lineage: Lineage) -> Lineage:
    """A revision created by a plan whose status never landed becomes the candidate."""
    known = max(
        [e.revision for e in lineage.history]
        + [n or 0 for n in (lineage.current, lineage.previous)]
    )
    orphans = [
        number
        for number, view in facts.revisions.items()
        if number > known and view.generation == facts.generation and facts.wanted(view)
    ]
    if lineage.candidate is not None or facts.pinned is not None or not orphans:
        return lineage
    candidate = max(orphans)
    history = upsert(
        lineage.history,
        candidate,
        key=facts.key,
        generation=facts.generation,
        state=RevisionState.ROLLING_OUT,
        reason=None,
        time=facts.now,
    )
    return replace(
        lineage,
        candidate=candidate,
        history=tuple(history),
        progress=RolloutProgress(started_at=facts.now, step_started_at=facts.now),
    )


def supersede(facts: Facts, lineage: Lineage) -> tuple[Lineage, tuple[Emit, ...]]:
    """A candidate that is no longer wanted stops; the current revision serves on."""
    if lineage.candidate is None:
        return lineage, ()
    candidate = facts.revisions.get(lineage.candidate)
    if (candidate is None and facts.pinned is None) or facts.wanted(candidate):
        return lineage, ()
    why = (
        f"rollback-to revision {facts.pinned}"
        if facts.pinned is not None
        else f"generation {facts.generation}"
    )
    history = upsert(
        lineage.history,
        lineage.candidate,
        state=RevisionState.SUPERSEDED,
        reason=f"Superseded: replaced by {why}",
        time=facts.now,
    )
    event = Emit(
        EventReason.ROLLOUT_SUPERSEDED,
        f"revision {lineage.candidate} stopped: superseded by {why}",
    )
    return replace(lineage, candidate=None, progress=None, history=tuple(history)), (event,)


def signature_block(facts: Facts, build: BuildOutcome) -> tuple[str, str] | None:
    """(digest, differences) when the wanted engine would fail the serving revision's clients."""
    serving = store_manifest(facts.observed.serving_entry, serving_key(facts.md) or "")
    candidate = build.manifest
    if serving is None or candidate is None or facts.pinned is not None:
        return None
    found = differences(serving, candidate)
    return (signature_digest(candidate), "; ".join(found)) if found else None


def start_candidate(
    facts: Facts, lineage: Lineage, build: BuildOutcome
) -> tuple[Lineage, tuple[Emit, ...], tuple[str, str] | None]:
    """A new candidate when what should serve differs from what serves (and can be had).

    Returns the lineage, its Events, and (reason, message) when an incompatible signature
    holds the new revision back until spec.rollout.acceptSignature names its digest.
    """
    current = facts.current_view(lineage)
    if lineage.candidate is not None or facts.wanted(current):
        return lineage, (), None
    cut_over = False
    if facts.pinned is not None:
        number = facts.pinned
        reason: str | None = history_reason(
            "ManualRollback", f"requested by {ANNOTATION_ROLLBACK_TO}"
        )
        event = Emit(
            EventReason.ROLLED_BACK,
            f"rolling back to revision {number} ({ANNOTATION_ROLLBACK_TO})",
        )
    elif build.manifest is None:
        return lineage, (), None
    else:
        block = signature_block(facts, build) if current is not None else None
        if block is not None:
            digest, diff = block
            if facts.md.spec.rollout.accept_signature != digest:
                return lineage, *held_back(facts, digest, diff)
            cut_over = True
        number = next_revision(lineage.history, lineage.current, lineage.previous, *facts.revisions)
        reason = None
        how = " (accepted signature change: cut over at once)" if cut_over else ""
        event = Emit(
            EventReason.REVISION_CREATED,
            f"revision {number} created for generation {facts.generation}: engine "
            f"{short_key(facts.key)}, serving {facts.serving_hash[:8]}{how}",
        )
    history = upsert(
        lineage.history,
        number,
        key=None if facts.pinned else facts.key,
        generation=None if facts.pinned else facts.generation,
        signature=None if facts.pinned or not build.manifest else signature_digest(build.manifest),
        state=RevisionState.ROLLING_OUT,
        reason=reason,
        time=facts.now,
    )
    progress = RolloutProgress(
        started_at=facts.now,
        step_started_at=facts.now,
        # A manual rollback returns to a revision that served before: no validation run.
        validated=facts.pinned is not None,
        cut_over=cut_over,
    )
    started = replace(lineage, candidate=number, history=tuple(history), progress=progress)
    return started, (event,), None


def held_back(facts: Facts, digest: str, diff: str) -> tuple[tuple[Emit, ...], tuple[str, str]]:
    """The Event (once per difference) and the status of a signature change held back."""
    # The opt-in comes first: a long difference is what gets cut, never the digest.
    message = (
        f"the new engine gets no traffic: to cut over at once anyway, set spec.rollout."
        f'acceptSignature: "{digest}". It changes the inputs or outputs clients use: {diff}'
    )[:REASON_LIMIT]
    prior = find_condition(facts.md.status.conditions, ConditionType.DEGRADED)
    seen = prior is not None and (prior.reason, prior.message) == ("IncompatibleSignature", message)
    events = () if seen else (Emit(EventReason.INCOMPATIBLE_SIGNATURE, message),)
    return events, ("IncompatibleSignature", message)


def step_candidate(facts: Facts, lineage: Lineage, build: BuildOutcome, desired: int) -> Moved:
    """Advance the candidate's rollout by one look: validate, wait, next step, promote or
    roll back."""
    number = lineage.candidate
    assert number is not None
    spec = facts.md.spec
    current = facts.current_view(lineage)
    candidate = facts.revisions.get(number)
    progress = lineage.progress or RolloutProgress(started_at=facts.now, step_started_at=facts.now)
    pinned = facts.pinned is not None
    steering = facts.steering
    at_once = is_immediate(spec.rollout, current is not None, pinned) or progress.cut_over
    # A promote request makes the rest of the rollout one 100% step.
    immediate = at_once or steering.promotes(number)
    weight = None if immediate else steering.weight_of(number)
    validation = view_validation(
        facts.observed.validation_jobs, facts.observed.messages, facts.name, number
    )
    step = step_rollout(
        StepInput(
            spec=spec.rollout,
            steps=steered_steps(steps_of(spec.rollout, immediate), progress.step, weight),
            desired=desired,
            current=current,
            candidate=candidate,
            progress=progress,
            analysis=facts.context.analyses.get(number),
            analysis_enabled=facts.context.analysis_enabled,
            immediate=immediate,
            validation=validation,
            now=facts.context.now,
            hold=steering.hold_reason(number),  # no effect on an immediate rollout
        )
    )
    targets = {number: step.candidate_replicas}
    if current is not None:
        targets[current.number] = step.current_replicas
    new_objects: tuple[dict[str, Any], ...] = ()
    if candidate is None and build.manifest is not None and not pinned:
        # Created now, or created before and gone since: (re)render it in full.
        configmap = (
            ()
            if revision_name(facts.name, number) in facts.observed.configmaps
            else (render_configmap(facts.md, number, build.manifest, facts.settings),)
        )
        deployment = render_deployment(
            facts.md,
            number,
            build.manifest,
            facts.settings,
            step.candidate_replicas,
            manifest_sha256=build.manifest_sha256,
        )
        new_objects = (*configmap, deployment)
    actions: tuple[Action, ...] = ()
    if step.start_validation and candidate is not None and build.manifest is not None:
        actions = start_job(facts.md, number, candidate, build.manifest, facts.settings)
    events: tuple[Emit, ...] = ()
    record = None
    if not progress.validated and step.progress.validated:
        record = validation_status(number, validation, facts.now)
        events = (Emit(EventReason.VALIDATION_PASSED, f"revision {number}: {validation.message}"),)
    elif validation.state == ValidationState.FAILED and step.outcome == Outcome.ROLLED_BACK:
        record = validation_status(number, validation, facts.now)
    steered, message, notes = record_steering(
        step.progress,
        progress.steered,
        "" if at_once else steering.note(number),
        number,
        step.message,
    )
    checked, events = events, (*events, *notes)
    moved = replace(lineage, progress=steered)
    base = Moved(
        moved,
        events,
        targets,
        new_objects,
        step.requeue_after,
        None,
        message,
        step.canary_weight,
        actions,
        record,
    )
    if steering.aborts(number) and not pinned:
        message = f"aborted by {ANNOTATION_ABORT}"
        base = replace(base, events=checked)  # the rollback says it; no "resumed" first
        return roll_back(facts, base, number, current, desired, "Aborted", message)
    if step.outcome == Outcome.STEP_PROMOTED:
        event = Emit(EventReason.STEP_PROMOTED, f"revision {number}: {step.message}")
        return replace(base, events=(*events, event))
    if step.outcome == Outcome.PROMOTED:
        return promote(facts, base, number, desired)
    if step.outcome == Outcome.ROLLED_BACK:
        reason, message = step.reason, step.message
        found = stuck(candidate.pods) if candidate is not None else None
        if reason == "ProgressDeadlineExceeded" and found is not None:
            # Say why the pods never came up, in the scheduler's or the kubelet's words.
            reason, message = found.reason, f"{found.message}; {message}"
        return roll_back(facts, base, number, current, desired, reason, message)
    return base


def promote(facts: Facts, moved: Moved, number: int, desired: int) -> Moved:
    """The candidate becomes the current revision; the old current becomes the previous one."""
    lineage = moved.lineage
    history = list(lineage.history)
    previous = lineage.previous
    if lineage.current is not None and lineage.current != number:
        history = upsert(
            history,
            lineage.current,
            state=RevisionState.SUPERSEDED,
            reason=f"Superseded: replaced by revision {number}",
            time=facts.now,
        )
        previous = lineage.current
    history = upsert(history, number, state=RevisionState.SERVING, reason=None, time=facts.now)
    event = Emit(
        EventReason.ROLLED_OUT,
        f"revision {number} serves all {desired} replicas (engine {short_key(facts.key)})",
    )
    promoted = Lineage(number, None, previous, tuple(history), None)
    return replace(moved, lineage=promoted, events=(*moved.events, event))


def roll_back(
    facts: Facts,
    moved: Moved,
    number: int,
    current: RevisionView | None,
    desired: int,
    reason: str,
    message: str,
) -> Moved:
    """The candidate stops; the current revision, if any, takes all replicas again."""
    state = RevisionState.ROLLED_BACK if current is not None else RevisionState.FAILED
    history = upsert(
        moved.lineage.history,
        number,
        generation=facts.generation,
        state=state,
        reason=history_reason(reason, message, facts.retry_token),
        time=facts.now,
    )
    targets = dict(moved.targets)
    if current is not None:
        text = f"revision {number} rolled back to {current.number}: {message}"
        targets[current.number] = desired
        event = Emit(EventReason.ROLLED_BACK, text)
    else:
        text = f"revision {number} failed and nothing older serves: {message}"
        event = Emit(EventReason.ROLLOUT_FAILED, text)
    targets[number] = 0
    lineage = replace(moved.lineage, candidate=None, progress=None, history=tuple(history))
    return replace(
        moved,
        lineage=lineage,
        events=(*moved.events, event),
        targets=targets,
        failure=(reason, text),
        canary_weight=0,
    )
