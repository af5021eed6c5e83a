"""Figures for canary analysis and autoscaling: gather, run the pure maths, hand to reconcile.

One coroutine per ModelDeployment (handlers/telemetry_tasks.py, on the leader) sleeps until its own
next look: every spec.rollout.canary.analysisIntervalSeconds while a canary runs, every
settings.metrics_interval_seconds for the serving pods (status.metrics, and a scaling decision
with spec.scaling). A slow scrape of one resource never delays another, and an idle resource
costs a sleeping task, not a periodic handler call. Results wait here until the next reconcile
takes them (`take`): each one is counted exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ..api import MetricsStatus, ModelDeployment, TrafficMode
from ..api.routes import DemandReport
from ..decide.analysis import Analysis, Verdict, analyse, analyse_clients
from ..decide.body import parse_body
from ..decide.canary_steps import is_immediate
from ..decide.clock import rfc3339
from ..decide.idle import Activity
from ..decide.scale_recommend import Recommendation, ScaleDecision, recommend
from ..decide.traffic import RouterReport, router_read_delay
from ..metrics.prometheus import Target, query_figures
from ..metrics.rates import IntervalFigures, to_metrics_status
from ..metrics.router import RouterSample
from ..metrics.scrape import MetricsTracker, Missing, MissingReason, ScrapeGates, new_session
from ..observability import log_ref
from ..render.common import ANNOTATION_ROLLBACK_TO
from ..settings import Settings
from .activity import ActivityLog
from .pods import MetricsUrl, Pod, PodSource, ready_revision_pods
from .router_watch import RouterReading, read_router

logger = logging.getLogger(__name__)

Key = tuple[str, str]
FIRST = asyncio.FIRST_COMPLETED
IDLE_SECONDS = 60.0  # nothing to watch: a poke (every reconcile) wakes the daemon sooner
NO_PODS_RETRY_SECONDS = 5.0  # a candidate without ready pods: pod events poke sooner


@dataclass(frozen=True)
class Fed:
    """What the next reconcile receives: new analyses, a scaling decision, status.metrics."""

    analyses: Mapping[int, Analysis] = field(default_factory=dict)
    scale: ScaleDecision | None = None
    metrics: MetricsStatus | None = None
    router: RouterReport | None = None
    activity: Activity = field(default_factory=Activity)


@dataclass
class _State:
    """One ModelDeployment's trackers, schedule and results not yet taken."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    canary_revision: int | None = None
    canary: MetricsTracker | None = None
    canary_due: float = 0.0
    scaler: MetricsTracker | None = None
    scale_due: float = 0.0
    recommendations: tuple[Recommendation, ...] = ()
    analysis: tuple[int, Analysis] | None = None
    scale: ScaleDecision | None = None
    metrics: MetricsStatus | None = None
    router: RouterReport | None = None  # the newest reading, kept until the next one
    router_base: dict[str, RouterSample] = field(default_factory=dict)  # at the last analysis
    router_reading: RouterReading | None = None
    router_behind_since: float | None = None  # since when they lag behind the published table
    activity: ActivityLog = field(default_factory=ActivityLog)  # scale to zero


@dataclass(frozen=True)
class _Round:
    """One gathering: figures per pod (scraped) or one aggregate (Prometheus), and when."""

    figures: Sequence[IntervalFigures]
    aggregate: IntervalFigures | None
    missing: Sequence[Missing]
    now: float

    @property
    def baseline_only(self) -> bool:
        """Only first samples: nothing to judge yet."""
        return not self.figures and all(m.reason == MissingReason.BASELINE for m in self.missing)


class Telemetry:
    """Per-ModelDeployment metric trackers and pending results, in the operator's memory."""

    def __init__(
        self,
        pods: PodSource,
        settings: Settings,
        metrics_url: MetricsUrl,
        body_of: Callable[[Key], Mapping[str, Any] | None],
        trigger: Callable[[str, str], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pods, self._settings, self._url = pods, settings, metrics_url
        self._body_of, self._trigger, self._clock = body_of, trigger, clock
        self._states: dict[Key, _State] = {}
        self._session: aiohttp.ClientSession | None = None
        # One tenant's hanging pods wait for that tenant's own connection slots only.
        self._gates = ScrapeGates()

    # --- the reconcile's side -------------------------------------------------------------------
    def take(self, key: Key) -> Fed:
        """Results gathered since the last reconcile (each handed out once)."""
        state = self._states.get(key)
        if state is None:
            return Fed()
        analyses = dict([state.analysis]) if state.analysis is not None else {}
        fed = Fed(analyses, state.scale, state.metrics, state.router, state.activity.take())
        state.analysis, state.scale, state.metrics = None, None, None
        return fed

    async def note_demand(self, key: Key, report: DemandReport) -> None:
        """A router's report of held requests (scale to zero): kept for the next reconcile,
        which is asked for at once (a held request wakes the revision)."""
        self._states.setdefault(key, _State()).activity.note(report)
        logger.info(
            "router reports %s request (%.3f s)", report.event, report.seconds, extra=log_ref(*key)
        )
        await self._trigger(*key)

    def poke(self, key: Key) -> None:
        """Something changed (a reconcile ran): the daemon looks at its schedule again."""
        state = self._states.get(key)
        if state is not None:
            if state.canary is None:
                # No starting read of the candidate yet: its pods may have just become Ready
                # (pod events reconcile), so look now, not NO_PODS_RETRY_SECONDS later.
                state.canary_due = min(state.canary_due, self._clock())
            state.wake.set()

    def forget(self, key: Key) -> None:
        """Drop a deleted ModelDeployment's trackers and results."""
        self._states.pop(key, None)

    async def close(self) -> None:
        """Close the scraping session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the daemon's side ----------------------------------------------------------------------
    async def run(self, namespace: str, name: str, stopped: Awaitable[Any]) -> None:
        """Look, then sleep until the next look, a poke or `stopped` (the task is cancelled)."""
        key = (namespace, name)
        state = self._states.setdefault(key, _State())
        stop = asyncio.ensure_future(stopped)
        try:
            while not stop.done():
                try:
                    delay = await self.look(key, state)
                except Exception as exc:  # scraping never raises: a bug
                    logger.warning("metrics look failed: %r", exc, extra=log_ref(*key))
                    delay = NO_PODS_RETRY_SECONDS
                wake = asyncio.ensure_future(state.wake.wait())
                await asyncio.wait({wake, stop}, timeout=max(0.05, delay), return_when=FIRST)
                wake.cancel()
                state.wake.clear()
        finally:
            stop.cancel()

    async def look(self, key: Key, state: _State) -> float:
        """Analyse and/or recommend when due; trigger a reconcile with news; next delay."""
        body = self._body_of(key)
        md = parse_body(body) if body is not None else None
        if not isinstance(md, ModelDeployment):
            return IDLE_SECONDS
        delays, news = [IDLE_SECONDS], False
        if md.spec.rollout.traffic.mode == TrafficMode.ROUTER:
            news |= await self._read_router(key, state)
            delays.append(self._router_delay(md, state))
        now = self._clock()
        candidate = self._analysed_candidate(md)
        if candidate is None:
            state.canary_revision, state.canary = None, None
        else:
            if candidate != state.canary_revision:  # a new revision starts from a baseline
                state.canary_revision, state.canary, state.canary_due = candidate, None, now
            if now >= state.canary_due:
                news |= await self._analyse(key, md, state, candidate)
            delays.append(state.canary_due - now)
        if md.spec.scaling is None:
            state.recommendations, state.scale = (), None
        # Serving pods are read even without spec.scaling: status.metrics (the QPS column).
        if now >= state.scale_due:
            news |= await self._scale(key, md, state)
        delays.append(state.scale_due - now)
        if news:
            await self._trigger(*key)
        return min(delays)

    @staticmethod
    def _analysed_candidate(md: ModelDeployment) -> int | None:
        """The candidate revision a canary analysis gates, or None (immediate rollouts)."""
        rev = md.status.revision
        pinned = bool(md.metadata.annotations.get(ANNOTATION_ROLLBACK_TO, "").strip())
        if rev.candidate is None or is_immediate(md.spec.rollout, rev.current is not None, pinned):
            return None
        return rev.candidate

    async def _analyse(self, key: Key, md: ModelDeployment, state: _State, revision: int) -> bool:
        interval = float(md.spec.rollout.canary.analysis_interval_seconds)
        pods = await self._ready_pods(key, {revision})
        if not pods:
            state.canary_due = self._clock() + min(interval, NO_PODS_RETRY_SECONDS)
            return False
        if state.canary is None:
            state.canary = MetricsTracker(clock=self._clock)
        found = await self._gather(key, state.canary, pods, interval)
        state.canary_due = self._clock() + interval
        if found.baseline_only:
            return False
        analysis = self._judge(md, state, revision, found)
        state.analysis = (revision, analysis)
        logger.info(
            "canary revision %s analysis: %s (%s)",
            revision,
            analysis.verdict.value,
            analysis.message,
            extra=log_ref(*key),
        )
        return True

    def _judge(self, md: ModelDeployment, state: _State, revision: int, found: _Round) -> Analysis:
        """Router mode: what clients saw, against the stable revision; else Triton's counters."""
        spec = md.spec.rollout.canary
        if md.spec.rollout.traffic.mode != TrafficMode.ROUTER:
            analysis = analyse(found.aggregate, spec)
            if found.aggregate is None and found.missing:
                analysis = replace(analysis, note=f"{analysis.note}: {found.missing[0].message}")
            return analysis
        reading, base = state.router_reading, state.router_base
        state.router_base = dict(reading.samples) if reading is not None else {}
        traffic = md.status.traffic
        if reading is None or traffic is None or not reading.report.runs(traffic.version):
            return Analysis(Verdict.INCONCLUSIVE, note="the router has not applied the weights yet")
        seen = reading.since(base)
        if seen is None:
            return Analysis(Verdict.INCONCLUSIVE, note="first reading of the router pods")
        current = md.status.revision.current
        stable = seen.get(current) if current is not None else None
        return analyse_clients(seen.get(revision), stable, found.aggregate, spec)

    def _router_delay(self, md: ModelDeployment, state: _State) -> float:
        """Read the router again soon while it has not confirmed the published table."""
        published = md.status.traffic.version if md.status.traffic else None
        report = state.router
        behind = report is not None and published is not None and not report.runs(published)
        now = self._clock()
        if not behind:
            state.router_behind_since = None
        elif state.router_behind_since is None:
            state.router_behind_since = now
        lagging_for = now - (state.router_behind_since or now)
        return router_read_delay(state.router, published, lagging_for)

    async def _read_router(self, key: Key, state: _State) -> bool:
        """Read the router pods; True when what they run changed (the reconcile may go on)."""
        if self._session is None:
            self._session = new_session()
        namespace, name = key
        slot = self._gates.for_namespace(namespace)
        reading = await read_router(self._pods, self._session, namespace, name, self._url, slot)
        changed = state.router != reading.report
        state.router, state.router_reading = reading.report, reading
        state.activity.count(reading)
        return changed

    async def _scale(self, key: Key, md: ModelDeployment, state: _State) -> bool:
        """Read the serving pods: status.metrics always, a scaling decision with spec.scaling."""
        interval = self._settings.metrics_interval_seconds
        rev = md.status.revision
        current = md.status.replicas
        serving = {n for n in (rev.current, rev.candidate) if n is not None}
        pods = await self._ready_pods(key, serving) if serving and current > 0 else []
        state.scale_due = self._clock() + interval
        if not pods:
            return False
        if state.scaler is None:
            state.scaler = MetricsTracker(clock=self._clock)
        found = await self._gather(key, state.scaler, pods, interval)
        if found.aggregate is not None:
            state.metrics = to_metrics_status(found.aggregate, rfc3339(datetime.now(UTC)))
        if md.spec.scaling is None:
            return found.aggregate is not None
        decision = recommend(
            found.figures or ([found.aggregate] if found.aggregate else None),
            len(pods),
            current,
            md.spec.scaling,
            state.recommendations,
            found.now,
            self._settings.metrics_stale_seconds,
        )
        state.recommendations = decision.recommendations
        if decision.changed:
            state.scale = decision
            logger.info(
                "scale %s -> %s: %s",
                decision.current,
                decision.desired,
                decision.reason,
                extra=log_ref(*key),
            )
        return decision.changed or found.aggregate is not None

    # --- I/O --------------------------------------------------------------------------------
    async def _ready_pods(self, key: Key, revisions: set[int]) -> list[Pod]:
        return ready_revision_pods(self._pods, *key, revisions)

    async def _gather(
        self, key: Key, tracker: MetricsTracker, pods: Sequence[Pod], window_s: float
    ) -> _Round:
        """Figures of `pods` over the last window: scraped from the pods, or from Prometheus."""
        if self._session is None:
            self._session = new_session()
        namespace, name = key
        names = [str((p.get("metadata") or {}).get("name", "")) for p in pods]
        base_url = self._settings.prometheus_url
        if base_url:
            at = time.time()
            # Triton's model in every revision pod is named after the ModelDeployment.
            target = Target(model=name, namespace=namespace, pods=tuple(names))
            got = await query_figures(
                self._session, base_url.rstrip("/"), target, window_s=window_s, at=at
            )
            if isinstance(got, Missing):
                return _Round((), None, (got,), at)
            return _Round((got,), got, (), at)
        targets = {n: url for n, p in zip(names, pods, strict=True) if (url := self._url(p))}
        poll = await tracker.poll(self._session, targets, self._gates.for_namespace(namespace))
        return _Round(
            list(poll.figures.values()), poll.aggregate, list(poll.missing.values()), self._clock()
        )
