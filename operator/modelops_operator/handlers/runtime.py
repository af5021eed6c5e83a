"""The operator process: login, the parts a reconcile uses, leadership, and the watch's bookkeeping.

Per-object state lives in handlers/tracked.py; the reconcile itself in handlers/reconciler.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..decide.pacing import trigger_fingerprint
from ..decide.plan import Plan
from ..k8s.apply import Applier
from ..k8s.cache import ChildCache
from ..k8s.client import Credentials, KubeClient
from ..k8s.events import EventRecorder
from ..k8s.lease import LeaderElector
from ..k8s.observe import Observer
from ..k8s.resources import CHILD_RESOURCES
from ..k8s.store import EngineStore, store_from_settings
from ..metrics.deployments import Deployment
from ..observability import Health, OperatorMetrics
from ..render.names import label_value
from ..settings import Settings
from .demand_feed import DemandFeed
from .pods import MetricsUrl, default_metrics_url
from .reconciler import Reconciler
from .route_feed import RouteFeed
from .scheduler import Scheduler
from .telemetry import Telemetry
from .telemetry_tasks import TelemetryTasks
from .tracked import Body, Key, TrackedObjects

# A kopf login function: (**kopf kwargs) -> kopf.ConnectionInfo | None.
LoginSource = Callable[..., Awaitable[Any]]


@dataclass
class OperatorOptions:
    """How to run: Settings, where credentials come from, this replica's name and ports."""

    settings: Settings
    login: LoginSource
    metrics_host: str | None = "0.0.0.0"  # noqa: S104 - the pod's metrics port; None: no server
    metrics_port: int | None = None  # default: settings.metrics_port
    identity: str = field(default_factory=socket.gethostname)
    metrics_url: MetricsUrl = default_metrics_url  # where a pod's metrics page is


class Operator:
    """One process: reconciles on the leader only, one at a time per ModelDeployment."""

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
        self.cache = ChildCache(CHILD_RESOURCES)
        self.events = EventRecorder(self.client, host=options.identity)
        self.store: EngineStore = store_from_settings(self.settings)
        self.observer = Observer(
            self.cache, self.store, build_namespace=self.settings.operator_namespace
        )
        self.objects = TrackedObjects()
        self.routes = RouteFeed(self.latest, self.settings.transfer_key_bytes)
        self.telemetry = Telemetry(
            self.observer, self.settings, options.metrics_url, self.latest, self.trigger
        )
        self.demand = DemandFeed(self.routes, lambda: self.leading, self.telemetry.note_demand)
        self.telemetry_tasks = TelemetryTasks(self.telemetry.run)
        self.runner = Reconciler(
            settings=self.settings,
            client=self.client,
            observer=self.observer,
            applier=Applier(self.client, self.events, self.cache),
            telemetry=self.telemetry,
            telemetry_tasks=self.telemetry_tasks,
            routes=self.routes,
            metrics=self.metrics,
            health=self.health,
            objects=self.objects,
            scheduler=Scheduler(self._scheduled),
        )
        self.scheduler = self.runner.scheduler
        self.metrics.cached_objects.set_function(lambda: sum(self.cache.counts().values()))
        self.metrics.cached_bytes.set_function(self.cache.size_bytes)
        self.metrics.leader.set_function(lambda: float(self.leading))
        self.metrics.export_deployments(self.deployments)
        self.elector: LeaderElector | None = None  # set when leader election runs
        self.loop: asyncio.AbstractEventLoop | None = None  # kopf's, once started
        self.closed = False

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
        """Stop reconciling, stop the telemetry tasks, close the HTTP sessions."""
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
        self.objects.forget_handled()
        self.objects.forget_statuses()
        for key in list(self.objects):
            self.scheduler.now(key)

    async def stop_leading(self) -> None:
        """No more reconciles or telemetry here (another replica leads, or the process stops)."""
        await self.scheduler.stop()
        await self.telemetry_tasks.stop_all()
        self.metrics.forget_all()
        self.health.last_reconcile = None  # a standby's liveness does not wait for reconciles
        # What this process wrote is history once another replica writes: a standby's route
        # feed (and a later term as leader) must read the statuses the watch brings.
        self.objects.forget_statuses()

    # --- the watch's bookkeeping ----------------------------------------------------------------
    def seen(self, body: Body) -> None:
        """The newest body of a ModelDeployment (a watch event): reconcile if it asks for it."""
        meta = body.get("metadata") or {}
        self.health.watch_event()
        self.metrics.last_watch_event.set_to_current_time()
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        tracked = self.objects.seen(key, body)
        self.health.objects = len(self.objects)
        self.routes.notify(key)
        # Our own status patches come back as MODIFIED events: only other changes reconcile.
        if tracked.handled != trigger_fingerprint(body):
            self.scheduler.now(key)

    def forget(self, namespace: str, name: str) -> None:
        """Release everything kept about a deleted ModelDeployment."""
        key = (namespace, name)
        self.objects.forget(key)
        self.telemetry.forget(key)
        self.telemetry_tasks.stop(key)
        self.scheduler.cancel(key)
        self.metrics.forget(namespace, name)
        self.health.objects = len(self.objects)

    def latest(self, key: Key) -> Body | None:
        """The newest body seen of a ModelDeployment, with the status this process wrote last."""
        tracked = self.objects.get(key)
        return None if tracked is None else tracked.latest()

    def deployments(self) -> list[Deployment]:
        """The watched ModelDeployments for /metrics: on the leader only (one source per series)."""
        if not self.leading:
            return []
        out = []
        for key in list(self.objects):
            body = self.latest(key)
            if body is None:
                continue
            engine = ((body.get("status") or {}).get("engine") or {}).get("key")
            stages = self.store.stage_seconds(engine) if isinstance(engine, str) else {}
            out.append(Deployment(key[0], key[1], body, stages))
        return out

    def owner_of(self, namespace: str, label: str) -> str:
        """The ModelDeployment whose children carry `modelops.dev/deployment=<label>`."""
        if (namespace, label) in self.objects:
            return label
        # Names longer than a label value are hashed in labels (render.names.label_value).
        for ns, name in self.objects:
            if ns == namespace and label_value(name) == label:
                return name
        return label

    # --- reconciles -----------------------------------------------------------------------------
    @property
    def reconciles(self) -> int:
        """Reconciles that applied a plan of a valid spec."""
        return self.runner.reconciles

    async def reconcile(self, namespace: str, name: str, body: Body | None = None) -> Plan | None:
        """Read -> decide -> apply for one ModelDeployment now (handlers/reconciler.py)."""
        return await self.runner.reconcile(namespace, name, body)

    async def trigger(self, namespace: str, name: str) -> None:
        """Reconcile soon (telemetry's news, a child's event); folded into a waiting one."""
        self.scheduler.now((namespace, name))

    async def _scheduled(self, key: Key) -> None:
        await self.runner.scheduled(key)
