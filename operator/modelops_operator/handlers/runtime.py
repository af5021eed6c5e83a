"""The operator's state in one process: client, caches, and the reconcile: read, decide, apply."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..api import ModelDeployment
from ..decide.analysis import Analysis
from ..decide.body import parse_body
from ..decide.facts import observe_keys
from ..decide.finalizers import legacy_cleanup
from ..decide.inputs import DecideContext, Observed, ObserveKeys
from ..decide.pacing import next_delay, retry_delay, safety_delay, trigger_fingerprint
from ..decide.plan import Plan
from ..decide.reconcile import reconcile
from ..k8s.apply import Applied, Applier
from ..k8s.cache import ChildCache
from ..k8s.client import Credentials, KubeClient
from ..k8s.errors import ConflictError, NotFoundError
from ..k8s.events import EventRecorder
from ..k8s.lease import LeaderElector, NotLeaderError
from ..k8s.observe import Observer
from ..k8s.resources import (
    CHILD_RESOURCES,
    MODELDEPLOYMENTS,
    PODS,
)
from ..k8s.store import EngineStore, store_from_settings
from ..observability import Health, OperatorMetrics, log_ref
from ..render.names import label_value
from ..settings import Settings
from .accounting import count_plan
from .daemons import Daemons
from .demand_feed import DemandFeed
from .pods import MetricsUrl, default_metrics_url
from .route_feed import RouteFeed
from .scheduler import Scheduler
from .telemetry import Telemetry

logger = logging.getLogger(__name__)

Key = tuple[str, str]
Body = Mapping[str, Any]
# A kopf login function: (**kopf kwargs) -> kopf.ConnectionInfo | None.
LoginSource = Callable[..., Awaitable[Any]]
# Canary analyses per revision for DecideContext (metrics/ scraping): body, observed -> analyses.
AnalysesProvider = Callable[[Body, Observed], Awaitable[Mapping[int, Analysis]]]


class InvalidSpecError(Exception):
    """The spec cannot be acted on: status says Failed; retried only when the spec changes."""


@dataclass
class OperatorOptions:
    """How to run: Settings plus what differs between production, tests and the benchmark."""

    settings: Settings
    login: LoginSource
    initial_streaming: bool = False  # kmock replays every object on WATCH: stream, don't LIST
    metrics_host: str | None = "0.0.0.0"  # noqa: S104 - the pod's metrics port; None: no server
    metrics_port: int | None = None  # default: settings.metrics_port
    analyses: AnalysesProvider | None = None  # extra analyses, merged over telemetry's
    identity: str = field(default_factory=socket.gethostname)
    telemetry: bool = True  # canary analysis and autoscaling from Triton's metrics
    metrics_url: MetricsUrl = default_metrics_url  # tests map pod IPs to loopback Tritons
    draw: Callable[[], float] = random.random  # the safety net's jitter (tests fix it)


class Operator:
    """One reconcile at a time per ModelDeployment, on the leader only; events coalesce."""

    def __init__(self, options: OperatorOptions) -> None:
        self.options = options
        self.settings = options.settings
        self.metrics = OperatorMetrics()
        self.health = Health(max_reconcile_age=3 * self.settings.reconcile_interval_seconds + 60)
        self._login_source = options.login
        self._login_kwargs: dict[str, Any] = {}
        self._connection: Any = None
        self.logged_in = asyncio.Event()  # kopf runs the login beside, not before, startup
        self.client = KubeClient(
            self._credentials, user_agent=f"modelops-operator/{options.identity}"
        )
        self.cache = ChildCache(CHILD_RESOURCES, specless=[PODS.plural])
        self.events = EventRecorder(self.client, host=options.identity)
        self.store: EngineStore = store_from_settings(self.settings)
        self.observer = Observer(
            self.cache, self.store, build_namespace=self.settings.operator_namespace
        )
        self.applier = Applier(self.client, self.events, self.cache)
        self.routes = RouteFeed(self.latest, self.settings.transfer_key_bytes)
        self.telemetry = Telemetry(
            self.observer, self.settings, options.metrics_url, self.latest, self.trigger
        )
        self.demand = DemandFeed(self.routes, lambda: self.leading, self.telemetry.note_demand)
        self.daemons = Daemons(self.telemetry.run)
        self.scheduler = Scheduler(self._scheduled)
        self.metrics.cached_objects.set_function(lambda: sum(self.cache.counts().values()))
        self.metrics.cached_bytes.set_function(self.cache.size_bytes)
        self.metrics.leader.set_function(lambda: float(self.leading))
        self.elector: LeaderElector | None = None  # set when leader election runs
        self.loop: asyncio.AbstractEventLoop | None = None  # kopf's, once started
        self.reconciles = 0
        self.closed = False
        self._locks: dict[Key, asyncio.Lock] = {}
        self._statuses: dict[Key, dict[str, Any]] = {}
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._handled: dict[Key, tuple[Any, ...]] = {}
        self._failures: dict[Key, int] = {}
        self._netted: set[Key] = set()  # objects whose safety net was set once

    # --- credentials ----------------------------------------------------------------------------
    async def login(self, **kwargs: Any) -> Any:
        """kopf's login: the configured source; the client re-uses the same credentials."""
        self._login_kwargs = kwargs
        info = await self._login_source(**kwargs)
        if info is not None:
            self._connection = info
            self.logged_in.set()
        return info

    async def _credentials(self) -> Credentials:
        # Re-run the source (a rotated ServiceAccount token is re-read), else keep kopf's result.
        info = await self._login_source(**self._login_kwargs) if self._login_kwargs else None
        info = info or self._connection
        if info is None:
            raise RuntimeError("no Kubernetes credentials: kopf has not logged in yet")
        self._connection = info
        return Credentials.from_connection_info(info)

    @property
    def default_namespace(self) -> str | None:
        """The namespace of the login (in a pod: its own), once logged in."""
        return getattr(self._connection, "default_namespace", None)

    async def close(self) -> None:
        """Stop reconciling, stop the daemons, close the HTTP sessions."""
        await self.stop_leading()
        await self.telemetry.close()
        await self.client.close()
        self.closed = True

    # --- leadership -----------------------------------------------------------------------------
    @property
    def leading(self) -> bool:
        """Whether this process reconciles (holds the Lease, or runs without election)."""
        return self.scheduler.enabled

    def start_leading(self) -> None:
        """Reconcile every ModelDeployment seen so far (from the caches), then on every event."""
        self.scheduler.enabled = True
        self._handled.clear()
        self._statuses.clear()
        for key in list(self._bodies):
            self.scheduler.now(key)

    async def stop_leading(self) -> None:
        """No more reconciles or telemetry here (another replica leads, or the process stops)."""
        await self.scheduler.stop()
        await self.daemons.stop_all()
        self.health.last_reconcile = None  # a standby's liveness does not wait for reconciles
        # What this process wrote is history once another replica writes: a standby's route
        # feed (and a later term as leader) must read the statuses the watch brings.
        self._statuses.clear()

    # --- bookkeeping ----------------------------------------------------------------------------
    def seen(self, body: Body) -> None:
        """The newest body of a ModelDeployment (a watch event): reconcile if it asks for it."""
        meta = body.get("metadata") or {}
        self.health.watch_event()
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        self._bodies[key] = dict(body)
        self.health.objects = len(self._bodies)
        self.routes.notify(key)
        # Our own status patches come back as MODIFIED events: only other changes reconcile.
        if self._handled.get(key) != trigger_fingerprint(body):
            self.scheduler.now(key)

    def forget(self, namespace: str, name: str) -> None:
        """Release everything kept about a deleted ModelDeployment."""
        key = (namespace, name)
        self._statuses.pop(key, None)
        self._bodies.pop(key, None)
        self._handled.pop(key, None)
        self._failures.pop(key, None)
        self._netted.discard(key)
        self._locks.pop(key, None)
        self.telemetry.forget(key)
        self.daemons.stop(key)
        self.scheduler.cancel(key)
        self.metrics.set_phase(namespace, name, None)
        self.health.objects = len(self._bodies)

    def latest(self, key: Key) -> Body | None:
        """The newest body seen of a ModelDeployment, with the status this process wrote last."""
        body = self._bodies.get(key)
        return None if body is None else self._with_own_status(key, body)

    def owner_of(self, namespace: str, label: str) -> str:
        """The ModelDeployment whose children carry `modelops.dev/deployment=<label>`."""
        if (namespace, label) in self._bodies:
            return label
        # Names longer than a label value are hashed in labels (render.names.label_value).
        for ns, name in self._bodies:
            if ns == namespace and label_value(name) == label:
                return name
        return label

    # --- reconcile ------------------------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str, body: Body | None = None) -> Plan | None:
        """Read -> decide -> apply for one ModelDeployment; None when it is gone or going."""
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            started = time.perf_counter()
            try:
                plan = await self._reconcile_locked(key, body)
            except InvalidSpecError:
                self.metrics.reconciles.labels("invalid").inc()
                raise
            except Exception:
                self.metrics.reconciles.labels("error").inc()
                raise
            finally:
                self.health.reconciled()
                self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                self.metrics.api_requests.set(self.client.requests)
            self.reconciles += 1
            self.metrics.reconciles.labels("ok" if plan is not None else "gone").inc()
            return plan

    async def _reconcile_locked(self, key: Key, given: Body | None) -> Plan | None:
        namespace, name = key
        body = given or self._bodies.get(key)
        if body is None:
            return None  # never seen (or deleted): the watch brings it if it exists
        self._handled[key] = trigger_fingerprint(body)
        body = await self._without_legacy_finalizers(key, body)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        body = self._with_own_status(key, body)
        parsed = parse_body(body)
        valid = isinstance(parsed, ModelDeployment)
        keys = ObserveKeys(desired=None, serving=None)
        if isinstance(parsed, ModelDeployment):
            keys = observe_keys(parsed, self.settings)
        uid = (body.get("metadata") or {}).get("uid")
        observed = await self.observer.observe(namespace, name, uid, keys)
        # Taken once: a result lost to a failed apply is replaced by the next interval's.
        fed = self.telemetry.take(key)
        analyses: dict[int, Analysis] = dict(fed.analyses)
        if self.options.analyses is not None and valid:
            analyses.update(await self.options.analyses(body, observed))
        ctx = DecideContext(
            now=datetime.now(UTC),
            settings=self.settings,
            analyses=analyses,
            analysis_enabled=self.options.telemetry or self.options.analyses is not None,
            scale=fed.scale,
            metrics=fed.metrics,
            router=fed.router,
            activity=fed.activity,
        )
        plan = reconcile(parsed, observed, ctx)
        applied = await self.applier.apply(body, observed, plan)
        self.telemetry.poke(key)
        self._statuses[key] = dict(plan.status)
        self.routes.notify(key)
        count_plan(self.metrics, plan, applied)
        self.metrics.set_phase(namespace, name, plan.status.get("phase"))
        revision = plan.status.get("revision") or {}
        wanted = revision.get("current") is not None or revision.get("candidate") is not None
        self.daemons.ensure(key, self.options.telemetry and wanted)
        # The first pass of an object lands anywhere in the interval: objects created or
        # resumed together spread out at once, not only after many jittered passes.
        interval = self.settings.reconcile_interval_seconds
        first = key not in self._netted
        self._netted.add(key)
        safety = safety_delay(interval, self.options.draw(), first=first)
        self.scheduler.at(key, next_delay(plan.requeue_after, safety, interval))
        self._log(key, plan, applied)
        if not isinstance(parsed, ModelDeployment):
            raise InvalidSpecError(parsed.message)  # decide wrote Failed + the message into status
        return plan

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

    def _with_own_status(self, key: Key, body: Body) -> Body:
        # We are the only writer of status; a body from a watch event can predate our last
        # patch (a timer firing before the MODIFIED event arrives): decide on what we wrote.
        own = self._statuses.get(key)
        if own is None or body.get("status") == own:
            return body
        return {**body, "status": own}

    # --- triggers -------------------------------------------------------------------------------
    async def trigger(self, namespace: str, name: str) -> None:
        """Reconcile soon (telemetry's news, a child's event); folded into a waiting one."""
        self.scheduler.now((namespace, name))

    async def _scheduled(self, key: Key) -> None:
        """The scheduler's reconcile: failures back off, an invalid spec waits for a change."""
        try:
            await self.reconcile(*key)
        except InvalidSpecError:
            self._failures.pop(key, None)
            return
        except NotLeaderError:
            return  # leadership is gone: the elector stops the scheduler
        except Exception as exc:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            self.scheduler.at(key, retry_delay(failures))
            logger.warning("reconcile failed (%s in a row): %s", failures, exc, extra=log_ref(*key))
            return
        self._failures.pop(key, None)
