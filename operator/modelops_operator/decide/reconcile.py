"""The whole decision for one ModelDeployment: (parsed body, observed children, context) -> Plan.

Read it top to bottom: the facts, then the lineage of revisions moved step by step (adopt an
orphan, supersede, size, build, start, step), then the writes to children and the status. Every
step is a pure function returning a frozen result; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..api import (
    ConditionType,
    EndpointStatus,
    ModelDeployment,
    RevisionStatus,
    ScaleRecord,
    find_condition,
)
from ..render.common import ANNOTATION_RETRY, pod_selector
from ..render.service import endpoint
from .body import InvalidSpec, ParsedBody
from .build import SHORT_REQUEUE_SECONDS, BuildOutcome
from .children import child_writes
from .clock import rfc3339
from .engine import decide_engine
from .facts import Facts, Lineage, read_facts
from .history import blocking_failure, parse_reason
from .idle import IdleDecision, decide_idle, idle_condition
from .inputs import DecideContext, Observed
from .lineage import Moved, adopt_orphan, start_candidate, step_candidate, supersede
from .plan import Emit, EventReason, Plan
from .pod_health import Stuck, stuck
from .policy import policy_refusal
from .replicas import desired_replicas
from .routing import TrafficPlan, plan_traffic
from .scale_apply import Scaled, apply_scale
from .status import Situation, bounded, compose_status, invalid_status


def reconcile(parsed: ParsedBody, observed: Observed, context: DecideContext) -> Plan:
    """Decide the actions and the status of one ModelDeployment; pure and deterministic."""
    now = rfc3339(context.now)
    if isinstance(parsed, InvalidSpec):
        return invalid_plan(parsed, now)
    refusal = policy_refusal(parsed, context.settings)
    if refusal is not None:  # nothing is built; what serves now keeps serving
        return invalid_plan(InvalidSpec(parsed.metadata, parsed.status, refusal), now)
    return valid_plan(parsed, observed, context, now)


def invalid_plan(invalid: InvalidSpec, now: str) -> Plan:
    """Failed with the message that names the field; the Event only the first time."""
    status, seen = invalid_status(invalid.metadata, invalid.status, invalid.message, now)
    events = () if seen else (Emit(EventReason.INVALID_SPEC, invalid.message),)
    return Plan(events, bounded(status), None)


@dataclass(frozen=True)
class Sizing:
    """The desired total of replicas, after the autoscaler's decision when there is one."""

    scaled: Scaled

    @property
    def desired(self) -> int:
        """Replicas the serving revision (or the rollout's two revisions) should run."""
        return self.scaled.desired


def size(facts: Facts, lineage: Lineage, idle: IdleDecision) -> Sizing:
    """serving.replicas, or the autoscaler's count clamped to the spec's bounds; 0 asleep."""
    md = facts.md
    current = facts.current_view(lineage)
    metrics = facts.context.metrics or md.status.metrics
    if idle.asleep:  # status.metrics keeps the last figures while nothing runs
        return Sizing(Scaled(0, md.status.last_scale, metrics))
    base = desired_replicas(md.spec, current, lineage.candidate is not None, md.status)
    scaled = apply_scale(md.spec, base, facts.context, md.status, facts.now)
    if idle.woke and current is not None and current.replicas == 0:
        reason = (
            "a request is waiting (held by the router)"
            if not lineage.candidate
            else ("a rollout started")
        )
        record = ScaleRecord.model_validate(
            {"from": 0, "to": scaled.desired, "reason": reason, "time": facts.now}
        )
        event = Emit(EventReason.SCALED, f"0 -> {scaled.desired} replicas: {reason}")
        scaled = Scaled(scaled.desired, record, scaled.metrics, (*scaled.events, event))
    return Sizing(scaled)


def busy(facts: Facts, lineage: Lineage, starting: bool = False) -> bool:
    """A rollout, its validation run or a rollback runs (or starts now): a candidate, or
    another revision with pods (scale to zero waits for them)."""
    if starting or lineage.candidate is not None:
        return True
    return any(n != lineage.current and view.replicas > 0 for n, view in facts.revisions.items())


def idle_of(facts: Facts, lineage: Lineage, starting: bool) -> IdleDecision:
    """Scale to zero's decision for this reconcile (`starting`: a candidate starts now)."""
    md = facts.md
    return decide_idle(
        md.spec,
        md.status.idle,
        facts.context.activity,
        lineage.current,
        busy(facts, lineage, starting),
        facts.context.now,
    )


@dataclass(frozen=True)
class EngineNeed:
    """Whether this reconcile needs the spec's engine, and what blocks a new attempt."""

    needed: bool
    blocked_failure: tuple[str, str] | None


def engine_need(facts: Facts, lineage: Lineage) -> EngineNeed:
    """A new revision needs the engine unless a rolled-back attempt blocks it (a manual
    rollback is never blocked); a candidate whose Deployment vanished needs it too."""
    blocked = None
    if facts.pinned is None:
        blocked = blocking_failure(lineage.history, facts.generation, facts.retry_token)
    wants_new = (
        lineage.candidate is None
        and not facts.wanted(facts.current_view(lineage))
        and facts.pinned is None
    )
    lost_candidate = (
        lineage.candidate is not None
        and lineage.candidate not in facts.revisions
        and facts.pinned is None
    )
    failure = None
    if blocked is not None and lineage.candidate is None:
        reason, _, message = parse_reason(blocked.reason)
        failure = (
            reason or "RolledBack",
            f"revision {blocked.revision}: {message}; "
            f"change the spec or {ANNOTATION_RETRY} to try again",
        )
    return EngineNeed((wants_new and blocked is None) or lost_candidate, failure)


def roll(
    facts: Facts, lineage: Lineage, build: BuildOutcome, need: EngineNeed, desired: int
) -> Moved:
    """Start a candidate when one is wanted and allowed, then step it once."""
    events: tuple[Emit, ...] = ()
    blocked = None
    if need.blocked_failure is None:
        lineage, events, blocked = start_candidate(facts, lineage, build)
    if lineage.candidate is None:
        targets = {} if lineage.current is None else {lineage.current: desired}
        return Moved(lineage, events, targets, failure=need.blocked_failure, blocked=blocked)
    moved = step_candidate(facts, lineage, build, desired)
    targets = dict(moved.targets)
    if moved.lineage.candidate is None and moved.lineage.current is not None:
        # Promoted or rolled back: the serving revision runs the desired replicas.
        targets.setdefault(moved.lineage.current, desired)
    return replace(moved, events=(*events, *moved.events), targets=targets)


def valid_plan(md: ModelDeployment, observed: Observed, context: DecideContext, now: str) -> Plan:
    """The plan of a valid spec: the chain of steps, then writes and status."""
    facts, pin_warnings = read_facts(md, observed, context, now)
    lineage = adopt_orphan(facts, Lineage.of(md.status))
    lineage, superseded = supersede(facts, lineage)
    need = engine_need(facts, lineage)
    build = decide_engine(
        md, facts.key, observed, needed=need.needed, now=context.now, settings=facts.settings
    )
    # A candidate starts in this reconcile when its engine is there: wake for it first.
    starting = need.needed and build.manifest is not None and lineage.candidate is None
    idle = idle_of(facts, lineage, starting)
    sizing = size(facts, lineage, idle)
    moved = roll(facts, lineage, build, need, sizing.desired)
    traffic = plan_traffic(facts, moved)
    writes = child_writes(
        facts, moved.lineage, build, moved, traffic, sizing.desired, asleep=idle.asleep
    )
    events = (
        *build.events,
        *pin_warnings,
        *superseded,
        *idle.events,
        *sizing.scaled.events,
        *moved.events,
        *traffic.events,
    )
    requeues = [
        delay
        for delay in (
            build.requeue_after,
            moved.requeue_after,
            idle.requeue_after,
            SHORT_REQUEUE_SECONDS if writes.held else None,
            traffic.gate.recheck_after if moved.lineage.candidate is None else None,
        )
        if delay is not None
    ]
    stuck_events = pods_stuck_events(facts, moved.lineage)
    status = new_status(facts, moved, build, need, sizing, traffic, idle)
    return Plan(
        (*writes.actions, *events, *stuck_events), status, min(requeues) if requeues else None
    )


def revision_stuck(facts: Facts, lineage: Lineage) -> tuple[int, Stuck] | None:
    """The candidate's (else the serving revision's) stuck pod, and that revision."""
    for number in (lineage.candidate, lineage.current):
        view = facts.revisions.get(number) if number is not None else None
        found = stuck(view.pods) if view is not None else None
        if number is not None and found is not None:
            return number, found
    return None


def pods_stuck_events(facts: Facts, lineage: Lineage) -> tuple[Emit, ...]:
    """PodStuck once per revision and reason (Ready's reason or message says it already)."""
    found = revision_stuck(facts, lineage)
    if found is None:
        return ()
    number, pod = found
    ready = find_condition(facts.md.status.conditions, ConditionType.READY)
    if ready is not None and (ready.reason == pod.reason or pod.message in ready.message):
        return ()
    return (Emit(EventReason.POD_STUCK, f"revision {number}: {pod.message}"),)


def new_status(
    facts: Facts,
    moved: Moved,
    build: BuildOutcome,
    need: EngineNeed,
    sizing: Sizing,
    traffic: TrafficPlan,
    idle: IdleDecision,
) -> dict[str, object]:
    """The full status in wire form: phase, conditions, revisions, replicas, endpoint."""
    lineage = moved.lineage
    serving = facts.current_view(lineage)
    tracked = {lineage.current, lineage.candidate}
    ready = sum(facts.revisions[n].ready for n in tracked if n is not None and n in facts.revisions)
    desired = sizing.desired
    found = revision_stuck(facts, lineage)
    candidate_stuck = found is not None and found[0] == lineage.candidate
    situation = Situation(
        generation=facts.generation,
        engine_status=build.status,
        engine_reason=build.reason,
        engine_message=build.message,
        building=need.needed and build.manifest is None and not build.failed,
        build_failed=build.failed and need.needed,
        current=lineage.current if serving is not None else None,
        current_matches=facts.wanted(serving),
        candidate=lineage.candidate,
        rollout_message=f"revision {lineage.candidate}: "
        + (found[1].message if found is not None and candidate_stuck else moved.message),
        failure=moved.failure,
        blocked=moved.blocked,
        pinned=facts.pinned,
        desired=desired,
        ready=serving.ready if serving is not None else 0,
        rollout_reason=found[1].reason if found is not None and candidate_stuck else "RollingOut",
        serving_note=found[1].message if found is not None and not candidate_stuck else None,
        idle=idle.asleep or (idle.waking and (serving is None or serving.ready == 0)),
        routing_wait=traffic.gate.waiting,
    )
    http, grpc = endpoint(facts.name, facts.md.metadata.namespace)
    status = compose_status(
        facts.md.status,
        situation,
        now=facts.now,
        engine=build.engine,
        revision=RevisionStatus(
            current=lineage.current, candidate=lineage.candidate, previous=lineage.previous
        ),
        rollout=lineage.progress,
        history=list(lineage.history),
        replicas=desired,
        ready_replicas=ready,
        ready=f"{ready}/{desired}",
        selector=pod_selector(facts.name),
        endpoint=EndpointStatus(http=http, grpc=grpc),
        metrics=sizing.scaled.metrics,
        last_scale=sizing.scaled.last_scale,
        traffic=traffic.status,
        validation=moved.validation or facts.md.status.validation,
        source_access=build.access or facts.md.status.source_access,
        idle=idle.status,
    )
    conditions = idle_condition(status.conditions, facts.md.spec, idle, facts.now, facts.generation)
    return bounded(status.model_copy(update={"conditions": conditions}))
