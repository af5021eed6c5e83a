"""The operator's own metrics (/metrics), liveness (/healthz) and structured logs."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .decide.plan import EventReason
from .metrics.deployments import Deployment, deployment_families
from .render.names import label_value

# Event reasons the ModelDeployment dashboard annotates (rollout steps, rollbacks, scaling) and
# builds: exported at 0 from a ModelDeployment's first Event on, so their first one shows.
ANNOTATED_REASONS = tuple(
    reason.value
    for reason in (
        EventReason.REVISION_CREATED,
        EventReason.STEP_PROMOTED,
        EventReason.TRAFFIC_SHIFTED,
        EventReason.ROLLED_OUT,
        EventReason.ROLLED_BACK,
        EventReason.ROLLOUT_FAILED,
        EventReason.SCALED,
        EventReason.BUILD_STARTED,
        EventReason.BUILD_SUCCEEDED,
        EventReason.BUILD_FAILED,
    )
)
# Probes: name -> async callable returning a JSON-able figure; raising means unhealthy.
Probe = Callable[[], Awaitable[Any]]


class OperatorMetrics:
    """Prometheus series of one operator process (its own registry: tests run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "modelops_reconciles", "Reconciles by result.", ["result"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "modelops_reconcile_duration_seconds",
            "Time of one reconcile (observe + decide + apply).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.builds = Counter(
            "modelops_builds",
            "Engine builds by event: started, succeeded, failed.",
            ["event"],
            registry=r,
        )
        for event in ("started", "succeeded", "failed"):  # at 0: a first failure shows
            self.builds.labels(event)
        self.rollouts = Counter("modelops_rollouts", "Revisions rolled out.", registry=r)
        self.rollbacks = Counter("modelops_rollbacks", "Revisions rolled back.", registry=r)
        self.deployment_events = Counter(
            "modelops_deployment_events",
            "Events posted on each ModelDeployment, by reason (a bounded set).",
            ["namespace", "modeldeployment", "reason"],
            registry=r,
        )
        self._event_labels: dict[tuple[str, str], set[str]] = {}
        self.api_requests = Gauge(
            "modelops_api_requests", "Kubernetes API requests made by the operator.", registry=r
        )
        self.cached_objects = Gauge(
            "modelops_cached_objects", "Children held in the watch-fed cache.", registry=r
        )
        self.cached_bytes = Gauge(
            "modelops_cached_bytes",
            "Deep size of the cached children (computed when scraped).",
            registry=r,
        )
        self.leader = Gauge(
            "modelops_leader", "1 while this replica holds the Lease and reconciles.", registry=r
        )
        self.last_watch_event = Gauge(
            "modelops_last_watch_event_timestamp_seconds",
            "Unix time of the last watch event the operator received.",
            registry=r,
        )

    def count_event(self, namespace: str, name: str, reason: str) -> None:
        """One more Event of `reason` on the ModelDeployment."""
        seen = self._event_labels.get((namespace, name))
        if seen is None:
            # The reasons dashboards annotate start at 0: a counter born at 1 shows no increase.
            seen = self._event_labels[(namespace, name)] = set(ANNOTATED_REASONS)
            for each in ANNOTATED_REASONS:
                self.deployment_events.labels(namespace, label_value(name), each)
        seen.add(reason)
        self.deployment_events.labels(namespace, label_value(name), reason).inc()

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted ModelDeployment's counters (series stay bounded by the live ones)."""
        for reason in self._event_labels.pop((namespace, name), set()):
            self.deployment_events.remove(namespace, label_value(name), reason)

    def forget_all(self) -> None:
        """Drop every ModelDeployment's counters (a standby exports none: the leader does)."""
        for namespace, name in list(self._event_labels):
            self.forget(namespace, name)

    def export_deployments(self, source: Callable[[], Iterable[Deployment]]) -> None:
        """Per-ModelDeployment gauges read from `source` at every scrape."""
        self.registry.register(_DeploymentCollector(source))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _DeploymentCollector:
    """A prometheus_client collector over the watched ModelDeployments."""

    def __init__(self, source: Callable[[], Iterable[Deployment]]) -> None:
        self._source = source

    def collect(self) -> list[Metric]:
        """The families of metrics/deployments.py, from the source's current view."""
        return deployment_families(self._source())


class Health:
    """Liveness facts; the probes are also registered with kopf (@kopf.on.probe)."""

    def __init__(self, max_reconcile_age: float) -> None:
        self.started = time.monotonic()
        self.last_watch_event: float | None = None
        self.last_reconcile: float | None = None
        self.max_reconcile_age = max_reconcile_age
        self.objects = 0

    def watch_event(self) -> None:
        """Record that a watch event arrived."""
        self.last_watch_event = time.monotonic()

    def reconciled(self) -> None:
        """Record a finished reconcile (any result: the loop is alive)."""
        self.last_reconcile = time.monotonic()

    async def watch_age(self) -> float | None:
        """Seconds since the last watch event (None before the first)."""
        if self.last_watch_event is None:
            return None
        return round(time.monotonic() - self.last_watch_event, 3)

    async def reconcile_age(self) -> float | None:
        """Seconds since the last reconcile; raises when resources exist but none ran lately."""
        if self.last_reconcile is None:
            return None
        age = time.monotonic() - self.last_reconcile
        # The safety-net timer reconciles every object each interval: silence means a stall.
        if self.objects and age > self.max_reconcile_age:
            raise RuntimeError(f"no reconcile for {age:.0f}s with {self.objects} resources")
        return round(age, 3)

    def probes(self) -> dict[str, Probe]:
        """The probes by name."""
        return {"watch_age_seconds": self.watch_age, "reconcile_age_seconds": self.reconcile_age}


async def evaluate(probes: Mapping[str, Probe]) -> tuple[bool, dict[str, Any]]:
    """Run every probe: (healthy, figures or errors)."""
    healthy = True
    out: dict[str, Any] = {}
    for name, probe in probes.items():
        try:
            out[name] = await probe()
        except Exception as exc:  # a probe failing is the answer, not a crash
            healthy = False
            out[name] = {"error": str(exc)}
    return healthy, out


class MetricsServer:
    """`/metrics` and `/healthz` on one port."""

    def __init__(
        self,
        metrics: OperatorMetrics,
        probes: Mapping[str, Probe],
        extra_routes: Sequence[aiohttp.web.RouteDef] = (),
    ) -> None:
        self._metrics = metrics
        self._probes = probes
        self._extra = list(extra_routes)
        self._runner: aiohttp.web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen (port 0 picks a free one, kept in `.port`)."""
        app = aiohttp.web.Application()
        app.add_routes(
            [
                aiohttp.web.get("/metrics", self._serve_metrics),
                aiohttp.web.get("/healthz", self._health),
                *self._extra,
            ]
        )
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _health(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        healthy, figures = await evaluate(self._probes)
        return aiohttp.web.json_response(figures, status=200 if healthy else 503)


# --- logs ----------------------------------------------------------------------------------------
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_OWN_EXTRAS = frozenset({"ref_namespace", "ref_name", "k8s_ref", "k8s_skip"})


def log_ref(namespace: str | None, name: str | None) -> dict[str, Any]:
    """`extra=` for a log line about one object (LogRecord reserves `name`)."""
    return {"ref_namespace": namespace, "ref_name": name}


def _ref(record: logging.LogRecord) -> tuple[str | None, str | None]:
    namespace = getattr(record, "ref_namespace", None)
    name = getattr(record, "ref_name", None)
    ref = getattr(record, "k8s_ref", None)  # kopf's per-object loggers put the object here
    if isinstance(ref, Mapping):
        namespace = namespace or ref.get("namespace")
        name = name or ref.get("name")
    return namespace, name


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, namespace/name, extras."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        namespace, name = _ref(record)
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if namespace:
            out["namespace"] = namespace
        if name:
            out["name"] = name
        for key, value in vars(record).items():
            if key in _STANDARD or key in out or key in _OWN_EXTRAS:
                continue
            if isinstance(value, str | int | float | bool):  # kopf attaches whole objects too
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class PlainFormatter(logging.Formatter):
    """`time level logger [namespace/name] message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The record with its object prefixed, unless kopf already prefixed it."""
        namespace, name = _ref(record)
        line = super().format(record)
        if name and getattr(record, "k8s_ref", None) is None:  # kopf prefixes its own
            return line.replace(
                record.getMessage(), f"[{namespace}/{name}] {record.getMessage()}", 1
            )
        return line


def configure_logging(log_format: str, verbose: bool) -> None:
    """Root logging to stderr in the configured format; kopf and aiohttp kept at INFO/WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not verbose:
        logging.getLogger("kopf").setLevel(logging.INFO)
