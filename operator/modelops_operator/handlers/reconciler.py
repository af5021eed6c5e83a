"""The reconcile of one ModelDeployment: read -> decide -> apply, then its next timer."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ..api import ModelDeployment
from ..decide.body import parse_body
from ..decide.build_queue import BuildLoad, waiting_builds
from ..decide.facts import observe_keys
from ..decide.finalizers import legacy_cleanup
from ..decide.inputs import DecideContext, ObserveKeys
from ..decide.pacing import next_delay, retry_delay, safety_delay, trigger_fingerprint
from ..decide.plan import Plan
from ..decide.reconcile import reconcile
from ..k8s.apply import Applied, Applier
from ..k8s.client import KubeClient
from ..k8s.errors import ConflictError, NotFoundError
from ..k8s.lease import NotLeaderError
from ..k8s.observe import Observer
from ..k8s.resources import MODELDEPLOYMENTS
from ..observability import Health, OperatorMetrics, log_ref
from ..settings import Settings
from .accounting import count_plan
from .route_feed import RouteFeed
from .scheduler import Scheduler
from .telemetry import Telemetry
from .telemetry_tasks import TelemetryTasks
from .tracked import Body, Key, Tracked, TrackedObjects

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pass:
    """One reconcile's result: the plan applied, and whether the spec could be acted on
    (an invalid one waits for a change of spec, not for a retry)."""

    plan: Plan
    valid: bool


@dataclass
class Reconciler:
    """Runs reconciles: one at a time per ModelDeployment, retries with backoff, timers."""

    settings: Settings
    client: KubeClient
    observer: Observer
    applier: Applier
    telemetry: Telemetry
    telemetry_tasks: TelemetryTasks
    routes: RouteFeed
    metrics: OperatorMetrics
    health: Health
    objects: TrackedObjects
    scheduler: Scheduler
    reconciles: int = 0

    async def reconcile(self, namespace: str, name: str, body: Body | None = None) -> Plan | None:
        """Read -> decide -> apply for one ModelDeployment; None when it is gone or going."""
        key = (namespace, name)
        async with self.objects.locked(key) as tracked:
            started = time.perf_counter()
            try:
                done = await self._reconcile_locked(key, tracked, body)
            except Exception:
                self.metrics.reconciles.labels("error").inc()
                raise
            finally:
                self.health.reconciled()
                self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                self.metrics.api_requests.set(self.client.requests)
            if done is None:
                self.metrics.reconciles.labels("gone").inc()
                return None
            if not done.valid:
                self.metrics.reconciles.labels("invalid").inc()
                tracked.failures = 0  # an invalid spec is not retried: it waits for a change
                return done.plan
            self.reconciles += 1
            self.metrics.reconciles.labels("ok").inc()
            tracked.failures = 0
            return done.plan

    async def scheduled(self, key: Key) -> None:
        """The scheduler's reconcile: failures back off with a timer of their own."""
        try:
            await self.reconcile(*key)
        except Exception as exc:
            tracked = self.objects.get(key)
            failures = 1 if tracked is None else tracked.failures + 1
            if tracked is not None:
                tracked.failures = failures
            # A refused write (NotLeaderError) retries too: a renewal that ran late refuses
            # writes until the next round renews the Lease still held, with no lost-lease
            # transition to reconcile everything again. A Lease really lost stops the
            # scheduler, which drops this timer.
            self.scheduler.at(key, retry_delay(failures))
            level = logging.INFO if isinstance(exc, NotLeaderError) else logging.WARNING
            logger.log(
                level, "reconcile failed (%s in a row): %s", failures, exc, extra=log_ref(*key)
            )

    def _build_load(self) -> BuildLoad:
        """The build Jobs running now and the builds waiting, from the caches (no request)."""
        found = (self.objects.get(key) for key in list(self.objects))
        bodies = (tracked.latest() for tracked in found if tracked is not None)
        return BuildLoad(self.observer.running_builds(), waiting_builds(bodies))

    async def _reconcile_locked(
        self, key: Key, tracked: Tracked, given: Body | None
    ) -> Pass | None:
        namespace, name = key
        body = given or tracked.body
        if body is None:
            return None  # never seen (or deleted): the watch brings it if it exists
        tracked.handled = trigger_fingerprint(body)
        body = await self._without_legacy_finalizers(key, body)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        own = tracked.status
        if own is not None and body.get("status") != own:
            body = {**body, "status": own}
        parsed = parse_body(body)
        keys = ObserveKeys(desired=None, serving=None)
        if isinstance(parsed, ModelDeployment):
            keys = observe_keys(parsed, self.settings)
        uid = (body.get("metadata") or {}).get("uid")
        observed = await self.observer.observe(namespace, name, uid, keys)
        observed = replace(observed, build_load=self._build_load())
        # Taken once: a result lost to a failed apply is replaced by the next interval's.
        fed = self.telemetry.take(key)
        ctx = DecideContext(
            now=datetime.now(UTC),
            settings=self.settings,
            analyses=dict(fed.analyses),
            analysis_enabled=True,
            scale=fed.scale,
            metrics=fed.metrics,
            router=fed.router,
            activity=fed.activity,
        )
        plan = reconcile(parsed, observed, ctx)

        def published() -> None:
            # The status is written: routers get the new table now, not after the Events.
            if not tracked.forgotten:
                tracked.status = dict(plan.status)
                self.routes.notify(key)

        applied = await self.applier.apply(body, observed, plan, published)
        self._log(key, plan, applied)
        count_plan(self.metrics, key, plan, applied)
        valid = isinstance(parsed, ModelDeployment)  # invalid: decide wrote Failed + why
        if tracked.forgotten:
            return Pass(plan, valid)  # deleted meanwhile: no status, timer or telemetry kept
        self.telemetry.poke(key)
        tracked.status = dict(plan.status)
        self.routes.notify(key)
        revision = plan.status.get("revision") or {}
        wanted = revision.get("current") is not None or revision.get("candidate") is not None
        self.telemetry_tasks.ensure(key, wanted)
        # The first pass of an object lands anywhere in the interval: objects created or
        # resumed together spread out at once, not only after many jittered passes.
        interval = self.settings.reconcile_interval_seconds
        safety = safety_delay(interval, random.random(), first=not tracked.netted)  # noqa: S311
        tracked.netted = True
        self.scheduler.at(key, next_delay(plan.requeue_after, safety, interval))
        return Pass(plan, valid)

    async def _without_legacy_finalizers(self, key: Key, body: Body) -> Body | None:
        """Earlier versions' finalizers go (issue: deletes must never hang); 409: read again."""
        for _ in range(3):
            patch = legacy_cleanup(body)
            if patch is None:
                return body
            try:
                body = await self.client.merge_patch(MODELDEPLOYMENTS, key[0], key[1], patch)
            except ConflictError:
                body = await self.client.get(MODELDEPLOYMENTS, *key)
            except NotFoundError:
                return None
            logger.info("removed legacy finalizers", extra=log_ref(*key))
        return body

    def _log(self, key: Key, plan: Plan, applied: Applied) -> None:
        # INFO only for what changed in the cluster; a status-only patch (a waiting rollout's
        # note, new metrics) is routine and stays at DEBUG.
        level = logging.INFO if applied.children_changed or applied.events else logging.DEBUG
        logger.log(
            level,
            "reconciled: phase=%s created=%s patched=%s deleted=%s events=%s",
            plan.status.get("phase"),
            applied.created,
            applied.patched,
            applied.deleted,
            applied.events,
            extra=log_ref(*key),
        )
