"""The whole decision for one ModelDeployment: (body, observed children, now) -> Plan."""

from __future__ import annotations

from typing import Any

from ..api import (
    EndpointStatus,
    ModelDeployment,
    RevisionState,
    RevisionStatus,
    RolloutProgress,
)
from ..render.common import ANNOTATION_RETRY, ANNOTATION_ROLLBACK_TO, pod_selector
from ..render.names import revision_name, revision_of
from ..render.revision import render_configmap, render_deployment, serving_hash
from ..render.service import endpoint, render_service
from .build import SHORT_REQUEUE_SECONDS, BuildOutcome, decide_build, desired_key, short_key
from .observed import (
    DecideContext,
    Observed,
    RevisionView,
    parse_body,
    revision_views,
    rfc3339,
)
from .plan import Action, Apply, Delete, Emit, Plan
from .rollout import (
    Outcome,
    desired_replicas,
    is_immediate,
    replica_plan,
    step_rollout,
    steps_of,
)
from .scaling import apply_scale
from .status import (
    Situation,
    blocking_failure,
    compose_status,
    history_reason,
    invalid_status,
    next_revision,
    parse_reason,
    upsert,
)

__all__ = ["desired_key", "reconcile"]

SERVED_STATES = (RevisionState.SERVING, RevisionState.SUPERSEDED)


def reconcile(body: dict[str, Any], observed: Observed, ctx: DecideContext) -> Plan:
    """Decide the actions and the status of one ModelDeployment; pure and deterministic."""
    parsed = parse_body(body)
    now = rfc3339(ctx.now)
    if not isinstance(parsed, ModelDeployment):
        meta, old, message = parsed
        status, seen = invalid_status(meta, old, message, now)
        events = () if seen else (Emit("Warning", "InvalidSpec", message),)
        return Plan(events, status.to_wire(), None)
    return _Run(parsed, observed, ctx, now).plan()


class _Run:
    """One reconcile: accumulates decisions, then turns them into a Plan."""

    def __init__(self, md: ModelDeployment, observed: Observed, ctx: DecideContext, now: str):
        self.md, self.observed, self.ctx, self.now = md, observed, ctx, now
        self.settings = ctx.settings
        self.name, self.gen = md.metadata.name, md.metadata.generation
        self.key = desired_key(md.spec, self.settings)
        self.shash = serving_hash(md.spec, self.settings)
        self.token = md.metadata.annotations.get(ANNOTATION_RETRY, "")
        self.revs = revision_views(observed)
        rev = md.status.revision
        self.cur, self.cand, self.prev = rev.current, rev.candidate, rev.previous
        self.history = list(md.status.history)
        self.progress = md.status.rollout
        self.events: list[Emit] = []
        self.requeue: list[float] = []
        self.targets: dict[int, int] = {}
        self.new_objects: list[dict[str, Any]] = []
        self.failure: tuple[str, str] | None = None
        self.rollout_message = ""
        self.pinned = self._pin()

    # --- target -------------------------------------------------------------------------------
    def _pin(self) -> int | None:
        """The revision named by `modelops.dev/rollback-to`, when it can be served again."""
        raw = self.md.metadata.annotations.get(ANNOTATION_ROLLBACK_TO, "").strip()
        if not raw:
            return None
        entry = next((e for e in self.history if raw.isdigit() and e.revision == int(raw)), None)
        # A revision that served once, or the one this annotation is already switching to.
        switching = entry is not None and entry.revision == self.cand
        usable = entry is not None and (entry.state in SERVED_STATES or switching)
        if entry is None or entry.revision not in self.revs or not usable:
            self.events.append(
                Emit(
                    "Warning",
                    "RollbackTargetInvalid",
                    f"{ANNOTATION_ROLLBACK_TO}={raw!r} ignored: no revision in status.history "
                    "that served and still has its Deployment",
                )
            )
            return None
        return entry.revision

    def matches(self, rev: RevisionView | None) -> bool:
        """True when a revision is what should serve: the pinned one, or the spec's."""
        if rev is None:
            return False
        if self.pinned is not None:
            return rev.number == self.pinned
        return (rev.key, rev.serving_hash) == (self.key, self.shash)

    def _adopt_orphan(self) -> None:
        """A revision created by a plan whose status never landed becomes the candidate."""
        known = max([e.revision for e in self.history] + [n or 0 for n in (self.cur, self.prev)])
        orphans = [
            n
            for n, r in self.revs.items()
            if n > known and r.generation == self.gen and self.matches(r)
        ]
        if self.cand is None and self.pinned is None and orphans:
            self.cand = max(orphans)
            self.progress = RolloutProgress(started_at=self.now, step_started_at=self.now)
            self.history = upsert(
                self.history,
                self.cand,
                key=self.key,
                generation=self.gen,
                state=RevisionState.ROLLING_OUT,
                reason=None,
                time=self.now,
            )

    def _supersede(self) -> None:
        """A candidate that is no longer wanted stops; the current revision serves on."""
        if self.cand is None:
            return
        cand = self.revs.get(self.cand)
        if (cand is None and self.pinned is None) or self.matches(cand):
            return
        why = (
            f"rollback-to revision {self.pinned}"
            if self.pinned is not None
            else f"generation {self.gen}"
        )
        self.history = upsert(
            self.history,
            self.cand,
            state=RevisionState.SUPERSEDED,
            reason=f"Superseded: replaced by {why}",
            time=self.now,
        )
        self.events.append(
            Emit(
                "Normal", "RolloutSuperseded", f"revision {self.cand} stopped: superseded by {why}"
            )
        )
        self.cand, self.progress = None, None

    # --- rollout ------------------------------------------------------------------------------
    def _start(self, build: BuildOutcome, current: RevisionView | None) -> None:
        """Start a candidate when the target differs from what serves."""
        if self.cand is not None or self.matches(current):
            return
        if self.pinned is not None:
            self.cand = self.pinned
            reason = history_reason("ManualRollback", f"requested by {ANNOTATION_ROLLBACK_TO}")
            self.events.append(
                Emit(
                    "Normal",
                    "RolledBack",
                    f"rolling back to revision {self.pinned} ({ANNOTATION_ROLLBACK_TO})",
                )
            )
        else:
            if build.manifest is None:
                return
            self.cand = next_revision(self.history, self.cur, self.prev, *self.revs)
            reason = None
            self.events.append(
                Emit(
                    "Normal",
                    "RevisionCreated",
                    f"revision {self.cand} created for generation {self.gen}: engine "
                    f"{short_key(self.key)}, serving {self.shash[:8]}",
                )
            )
        self.progress = RolloutProgress(started_at=self.now, step_started_at=self.now)
        self.history = upsert(
            self.history,
            self.cand,
            key=None if self.pinned else self.key,
            generation=None if self.pinned else self.gen,
            state=RevisionState.ROLLING_OUT,
            reason=reason,
            time=self.now,
        )

    def _step(self, build: BuildOutcome, current: RevisionView | None, desired: int) -> None:
        """Advance the candidate's rollout by one look."""
        assert self.cand is not None
        cand_no, cand = self.cand, self.revs.get(self.cand)
        immediate = is_immediate(self.md.spec.rollout, current is not None, self.pinned is not None)
        step = step_rollout(
            spec=self.md.spec.rollout,
            steps=steps_of(self.md.spec.rollout, immediate),
            desired=desired,
            current=current,
            candidate=cand,
            progress=self.progress
            or RolloutProgress(started_at=self.now, step_started_at=self.now),
            analysis=self.ctx.analyses.get(cand_no),
            analysis_enabled=self.ctx.analysis_enabled,
            immediate=immediate,
            now=self.ctx.now,
        )
        self.targets[cand_no] = step.candidate_replicas
        if current is not None:
            self.targets[current.number] = step.current_replicas
        if cand is None and build.manifest is not None and self.pinned is None:
            # Created now, or created before and gone since: (re)render it in full.
            if revision_name(self.name, cand_no) not in self.observed.configmaps:
                self.new_objects.append(
                    render_configmap(self.md, cand_no, build.manifest, self.settings)
                )
            self.new_objects += [
                render_deployment(
                    self.md, cand_no, build.manifest, self.settings, step.candidate_replicas
                ),
            ]
        if step.requeue_after is not None:
            self.requeue.append(step.requeue_after)
        self.progress, self.rollout_message = step.progress, step.message
        if step.outcome == Outcome.STEP_PROMOTED:
            self.events.append(
                Emit("Normal", "StepPromoted", f"revision {cand_no}: {step.message}")
            )
        elif step.outcome == Outcome.PROMOTED:
            self._promote(cand_no, desired)
        elif step.outcome == Outcome.ROLLED_BACK:
            self._roll_back(cand_no, current, desired, step.reason, step.message)

    def _promote(self, cand_no: int, desired: int) -> None:
        if self.cur is not None and self.cur != cand_no:
            self.history = upsert(
                self.history,
                self.cur,
                state=RevisionState.SUPERSEDED,
                reason=f"Superseded: replaced by revision {cand_no}",
                time=self.now,
            )
            self.prev = self.cur
        self.history = upsert(
            self.history, cand_no, state=RevisionState.SERVING, reason=None, time=self.now
        )
        self.events.append(
            Emit(
                "Normal",
                "RolledOut",
                f"revision {cand_no} serves all {desired} replicas (engine {short_key(self.key)})",
            )
        )
        self.cur, self.cand, self.progress = cand_no, None, None

    def _roll_back(
        self, cand_no: int, current: RevisionView | None, desired: int, reason: str, message: str
    ) -> None:
        state = RevisionState.ROLLED_BACK if current is not None else RevisionState.FAILED
        self.history = upsert(
            self.history,
            cand_no,
            generation=self.gen,
            state=state,
            reason=history_reason(reason, message, self.token),
            time=self.now,
        )
        if current is not None:
            text = f"revision {cand_no} rolled back to {current.number}: {message}"
            self.targets[current.number] = desired
            self.events.append(Emit("Warning", "RolledBack", text))
        else:
            text = f"revision {cand_no} failed and nothing older serves: {message}"
            self.events.append(Emit("Warning", "RolloutFailed", text))
        self.targets[cand_no] = 0
        self.failure = (reason, text)
        self.cand, self.progress = None, None

    # --- children -----------------------------------------------------------------------------
    def _keep(self) -> set[int]:
        return {n for n in (self.cur, self.cand, self.prev) if n is not None} | {
            e.revision for e in self.history
        }

    def _children(self, build: BuildOutcome) -> list[Action]:
        """Every write to children, ordered so that serving capacity only ever grows first."""
        keep = self._keep()
        replicas = replica_plan(self.revs, self.targets, keep)
        if replicas.held:
            self.requeue.append(SHORT_REQUEUE_SECONDS)
        orphan_configmaps = [
            Delete("v1", "ConfigMap", cm)
            for cm in sorted(self.observed.configmaps)
            if (n := revision_of(cm)) is not None
            and cm == revision_name(self.name, n)
            and n not in keep
            and n not in self.revs
        ]
        new = [o for o in self.new_objects if o["kind"] == "ConfigMap"]
        for n, rev in sorted(self.revs.items()):
            # A kept revision of today's engine and serving options whose ConfigMap vanished.
            same = (rev.key, rev.serving_hash) == (self.key, self.shash)
            if same and n in keep and rev.name not in self.observed.configmaps and build.manifest:
                new.append(render_configmap(self.md, n, build.manifest, self.settings))
        service: list[Action] = []
        if self.revs or self.new_objects:
            wanted = render_service(self.md)
            have = (self.observed.service or {}).get("spec") or {}
            if any(have.get(k) != wanted["spec"][k] for k in ("selector", "ports")):
                service.append(Apply(wanted))
        created = [Apply(o) for o in self.new_objects if o["kind"] == "Deployment"]
        return [
            *build.actions,
            *(Apply(o) for o in new),
            *service,
            *created,
            *replicas.ups,
            *replicas.downs,
            *replicas.deletes,
            *orphan_configmaps,
        ]

    # --- plan ---------------------------------------------------------------------------------
    def plan(self) -> Plan:
        """Run the decision and assemble the Plan."""
        self._adopt_orphan()
        self._supersede()
        current = self.revs.get(self.cur) if self.cur is not None else None
        base = desired_replicas(self.md.spec, current, self.cand is not None, self.md.status)
        scaled = apply_scale(self.md.spec, base, self.ctx, self.md.status, self.now)
        desired, self.events = scaled.desired, [*self.events, *scaled.events]
        # A manual rollback is never blocked; a spec that was rolled back is, until it changes.
        blocked = (
            blocking_failure(self.history, self.gen, self.token) if self.pinned is None else None
        )
        wants_new = self.cand is None and not self.matches(current) and self.pinned is None
        needs_engine = (wants_new and blocked is None) or (
            self.cand is not None and self.cand not in self.revs and self.pinned is None
        )
        build = decide_build(
            self.md,
            self.key,
            self.observed,
            needed=needs_engine,
            now=self.ctx.now,
            settings=self.settings,
        )
        self.events[:0] = build.events
        if build.requeue_after is not None:
            self.requeue.append(build.requeue_after)
        if blocked is None:
            self._start(build, current)
        elif self.cand is None:
            reason, _, message = parse_reason(blocked.reason)
            self.failure = (
                reason or "RolledBack",
                f"revision {blocked.revision}: {message}; "
                f"change the spec or {ANNOTATION_RETRY} to try again",
            )
        if self.cand is not None:
            self._step(build, current, desired)
        if self.cand is None and self.cur is not None:
            # Steady state: the serving revision runs the desired replicas (the autoscaler's
            # count when scaling is on, read back through desired_replicas).
            self.targets.setdefault(self.cur, desired)
        actions = self._children(build)
        serving = self.revs.get(self.cur) if self.cur is not None else None
        ready = sum(self.revs[n].ready for n in {self.cur, self.cand} if n in self.revs)
        situation = Situation(
            generation=self.gen,
            engine_status=build.status,
            engine_reason=build.reason,
            engine_message=build.message,
            building=needs_engine and build.manifest is None and not build.failed,
            build_failed=build.failed and needs_engine,
            current=self.cur if serving is not None else None,
            current_matches=self.matches(serving),
            candidate=self.cand,
            rollout_message=f"revision {self.cand}: {self.rollout_message}",
            failure=self.failure,
            pinned=self.pinned,
            desired=desired,
            ready=serving.ready if serving is not None else 0,
        )
        http, grpc = endpoint(self.name, self.md.metadata.namespace)
        status = compose_status(
            self.md.status,
            situation,
            now=self.now,
            engine=build.engine,
            revision=RevisionStatus(current=self.cur, candidate=self.cand, previous=self.prev),
            rollout=self.progress,
            history=self.history,
            replicas=desired,
            ready_replicas=ready,
            ready=f"{ready}/{desired}",
            selector=pod_selector(self.name),
            endpoint=EndpointStatus(http=http, grpc=grpc),
            metrics=scaled.metrics,
            last_scale=scaled.last_scale,
        )
        requeue = min(self.requeue) if self.requeue else None
        return Plan((*actions, *self.events), status.to_wire(), requeue)
