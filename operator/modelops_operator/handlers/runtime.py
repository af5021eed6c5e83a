"""The operator's state in one process: client, caches, and the reconcile: read, decide, apply."""

from __future__ import annotations

import asyncio
import logging
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
from ..decide.inputs import DecideContext, Observed, ObserveKeys
from ..decide.plan import Apply, Emit, EventReason, Plan
from ..decide.reconcile import reconcile
from ..k8s.apply import Applied, Applier
from ..k8s.client import Credentials, KubeClient
from ..k8s.events import EventRecorder
from ..k8s.observe import Observer
from ..k8s.resources import CONFIGMAPS, DEPLOYMENTS, JOBS, MODELDEPLOYMENTS, SERVICES
from ..k8s.store import EngineStore, store_from_settings
from ..observability import Health, OperatorMetrics, log_ref
from ..render.common import LABEL_COMPONENT, owner_labels
from ..render.names import label_value
from ..settings import Settings
from .pods import MetricsUrl, default_metrics_url
from .route_feed import RouteFeed
from .telemetry import Telemetry

logger = logging.getLogger(__name__)

Key = tuple[str, str]
Body = Mapping[str, Any]
# A kopf login function: (**kopf kwargs) -> kopf.ConnectionInfo | None.
LoginSource = Callable[..., Awaitable[Any]]
# Canary analyses per revision for DecideContext (metrics/ scraping): body, observed -> analyses.
AnalysesProvider = Callable[[Body, Observed], Awaitable[Mapping[int, Analysis]]]


# Which Events count in the operator's own metrics: a lookup, never a substring match.
ROLLBACK_REASONS = frozenset({EventReason.ROLLED_BACK, EventReason.ROLLOUT_FAILED})
BUILD_OUTCOMES = {EventReason.BUILD_SUCCEEDED: "succeeded", EventReason.BUILD_FAILED: "failed"}


class InvalidSpecError(Exception):
    """The spec cannot be acted on: status says Failed, kopf must not retry this generation."""


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


class Operator:
    """One reconcile at a time per ModelDeployment; child events coalesce into one reconcile."""

    def __init__(self, options: OperatorOptions) -> None:
        self.options = options
        self.settings = options.settings
        self.metrics = OperatorMetrics()
        self.health = Health(max_reconcile_age=3 * self.settings.reconcile_interval_seconds + 60)
        self._login_source = options.login
        self._login_kwargs: dict[str, Any] = {}
        self._connection: Any = None
        self.client = KubeClient(self._credentials)
        self.events = EventRecorder(self.client, host=options.identity)
        self.store: EngineStore = store_from_settings(self.settings)
        self.observer = Observer(
            self.client, self.store, build_namespace=self.settings.operator_namespace
        )
        self.applier = Applier(self.client, self.events)
        self.routes = RouteFeed(self.latest)
        self.telemetry = Telemetry(
            self.client, self.settings, options.metrics_url, self.latest, self.trigger
        )
        self.reconciles = 0
        self.closed = False
        self._locks: dict[Key, asyncio.Lock] = {}
        self._pending: set[Key] = set()
        self._statuses: dict[Key, dict[str, Any]] = {}
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._last: dict[Key, float] = {}
        self._requeues: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- credentials ----------------------------------------------------------------------------
    async def login(self, **kwargs: Any) -> Any:
        """kopf's login: the configured source; the client re-uses the same credentials."""
        self._login_kwargs = kwargs
        info = await self._login_source(**kwargs)
        if info is not None:
            self._connection = info
        return info

    async def _credentials(self) -> Credentials:
        # Re-run the source (a rotated ServiceAccount token is re-read), else keep kopf's result.
        info = await self._login_source(**self._login_kwargs) if self._login_kwargs else None
        info = info or self._connection
        if info is None:
            raise RuntimeError("no Kubernetes credentials: kopf has not logged in yet")
        self._connection = info
        return Credentials.from_connection_info(info)

    async def close(self) -> None:
        """Cancel requeues and background triggers, close the HTTP session."""
        for handle in self._requeues.values():
            handle.cancel()
        self._requeues.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.telemetry.close()
        await self.client.close()
        self.closed = True

    # --- bookkeeping ----------------------------------------------------------------------------
    def seen(self, body: Body) -> None:
        """Remember the newest body of a ModelDeployment (from its watch events)."""
        meta = body.get("metadata") or {}
        self.health.watch_event()
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        self._bodies[key] = dict(body)
        self.health.objects = len(self._bodies)
        self.routes.notify(key)

    def forget(self, namespace: str, name: str) -> None:
        """Release everything kept about a deleted ModelDeployment."""
        key = (namespace, name)
        self._statuses.pop(key, None)
        self._bodies.pop(key, None)
        self._last.pop(key, None)
        self._locks.pop(key, None)
        self.telemetry.forget(key)
        handle = self._requeues.pop(key, None)
        if handle is not None:
            handle.cancel()
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

    def recently_reconciled(self, namespace: str, name: str, within: float) -> bool:
        """Whether a reconcile finished less than `within` seconds ago."""
        last = self._last.get((namespace, name))
        return last is not None and time.monotonic() - last < within

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
                self._last[key] = time.monotonic()
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
            body = await self.client.get_or_none(MODELDEPLOYMENTS, namespace, name)
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
        )
        plan = reconcile(parsed, observed, ctx)
        applied = await self.applier.apply(body, observed, plan)
        self.telemetry.poke(key)
        self._statuses[key] = dict(plan.status)
        self.routes.notify(key)
        self._count(plan, applied)
        self.metrics.set_phase(namespace, name, plan.status.get("phase"))
        self._requeue(key, plan.requeue_after)
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
            extra=log_ref(namespace, name),
        )
        if not isinstance(parsed, ModelDeployment):
            raise InvalidSpecError(parsed.message)  # decide wrote Failed + the message into status
        return plan

    def _with_own_status(self, key: Key, body: Body) -> Body:
        # We are the only writer of status; a body from a watch event can predate our last
        # patch (a timer firing before the MODIFIED event arrives): decide on what we wrote.
        own = self._statuses.get(key)
        if own is None or body.get("status") == own:
            return body
        return {**body, "status": own}

    def _count(self, plan: Plan, applied: Applied) -> None:
        for action in plan.actions:
            if isinstance(action, Apply) and action.manifest.get("kind") == JOBS.kind:
                ref = f"{JOBS.kind}/{action.manifest['metadata']['name']}"
                labels = action.manifest["metadata"].get("labels") or {}
                if ref in applied.created and labels.get(LABEL_COMPONENT) == "build":
                    self.metrics.builds.labels("started").inc()
            elif isinstance(action, Apply) and action.manifest.get("kind") == DEPLOYMENTS.kind:
                ref = f"{DEPLOYMENTS.kind}/{action.manifest['metadata']['name']}"
                if ref in applied.created:
                    self.metrics.rollouts.inc()
            elif isinstance(action, Emit):
                self._count_event(action.reason)

    def _count_event(self, reason: EventReason) -> None:
        if reason in ROLLBACK_REASONS:
            self.metrics.rollbacks.inc()
        elif reason in BUILD_OUTCOMES:
            self.metrics.builds.labels(BUILD_OUTCOMES[reason]).inc()

    # --- triggers -------------------------------------------------------------------------------
    async def trigger(self, namespace: str, name: str) -> None:
        """Reconcile soon; a trigger while one is already waiting is folded into it."""
        key = (namespace, name)
        if key in self._pending:
            return  # the waiting reconcile reads the state after this event anyway
        self._pending.add(key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self._pending.discard(key)
        try:
            await self.reconcile(namespace, name)
        except InvalidSpecError:
            return
        except Exception as exc:  # a child event must not crash kopf's watcher; the timer retries
            logger.warning("reconcile after a child event failed: %s", exc, extra=log_ref(*key))

    def _requeue(self, key: Key, delay: float | None) -> None:
        old = self._requeues.pop(key, None)
        if old is not None:
            old.cancel()
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        self._requeues[key] = loop.call_later(max(0.0, delay), self._fire, key)

    def _fire(self, key: Key) -> None:
        self._requeues.pop(key, None)
        task = asyncio.get_running_loop().create_task(self.trigger(*key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- deletion -------------------------------------------------------------------------------
    async def delete_children(self, namespace: str, name: str) -> list[str]:
        """Delete every owned child (what garbage collection does on a real cluster)."""
        deleted: list[str] = []
        labels = owner_labels(name)
        for res in (DEPLOYMENTS, JOBS, CONFIGMAPS, SERVICES):
            for item in await self.client.list(res, namespace, labels):
                child = item["metadata"]["name"]
                if await self.client.delete(res, namespace, child):
                    deleted.append(f"{res.kind}/{child}")
        return deleted
