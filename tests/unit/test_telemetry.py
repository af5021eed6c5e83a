"""The metrics daemon's bookkeeping without I/O: pod addresses and results handed out once."""

from __future__ import annotations

import asyncio
from typing import Any

from modelops_operator.api import MetricsStatus, ModelDeployment
from modelops_operator.api.routes import DemandEvent, DemandReport
from modelops_operator.decide.analysis import Analysis, Verdict
from modelops_operator.decide.scale_recommend import ScaleDecision
from modelops_operator.decide.traffic import ROUTER_CATCHUP_SECONDS, ROUTER_SECONDS, RouterReport
from modelops_operator.handlers.activity import ActivityLog
from modelops_operator.handlers.pods import default_metrics_url, pod_ready
from modelops_operator.handlers.router_watch import RouterReading
from modelops_operator.handlers.telemetry import (
    Telemetry,
    _State,
)
from modelops_operator.metrics.router import RevisionCounts, RouterSample
from modelops_operator.metrics.scrape import MetricsTracker
from tests.support.decide_world import SETTINGS, body


def pod(ip: str | None, ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    """A pod with an IP and a Ready condition."""
    meta: dict[str, Any] = {"name": "p"}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": str(ready)}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status}


def test_default_metrics_url_addresses_triton_on_8002() -> None:
    assert default_metrics_url(pod("10.1.2.3")) == "http://10.1.2.3:8002/metrics"
    assert default_metrics_url(pod("fd00::7")) == "http://[fd00::7]:8002/metrics"
    assert default_metrics_url(pod(None)) is None


def test_only_ready_pods_that_are_not_terminating_count() -> None:
    assert pod_ready(pod("10.0.0.1"))
    assert not pod_ready(pod("10.0.0.1", ready=False))
    assert not pod_ready(pod("10.0.0.1", deleting=True))


def test_results_are_taken_once_and_forgotten_with_the_resource() -> None:
    async def trigger(namespace: str, name: str) -> None:
        raise AssertionError("no trigger without a daemon")

    telemetry = Telemetry(None, SETTINGS, default_metrics_url, lambda key: None, trigger)  # type: ignore[arg-type]
    key = ("ml", "resnet")
    assert telemetry.take(key).analyses == {}
    state = telemetry._states.setdefault(key, _State())
    analysis = Analysis(Verdict.FAIL, ("errorRate 0.25 > maxErrorRate 0.01",))
    state.analysis = (2, analysis)
    state.scale = ScaleDecision(3, 2, "queueTime 9100us > target 5000us")
    state.metrics = MetricsStatus(inferences_per_second=5.0)
    fed = telemetry.take(key)
    assert fed.analyses == {2: analysis}
    assert fed.scale is not None
    assert fed.scale.desired == 3
    assert fed.metrics is not None
    again = telemetry.take(key)
    assert (again.analyses, again.scale, again.metrics) == ({}, None, None)
    telemetry.poke(key)
    assert state.wake.is_set()
    telemetry.forget(key)
    assert key not in telemetry._states
    asyncio.run(telemetry.close())


def _reading(ready_pods: int, counts: list[float]) -> RouterReading:
    samples = {
        f"router-{i}": RouterSample(counts={1: RevisionCounts(requests=c)})
        for i, c in enumerate(counts)
    }
    return RouterReading(RouterReport(ready_pods, ready_pods, ()), samples)


def test_a_request_is_seen_when_router_counts_move_and_unknown_is_never_quiet() -> None:
    log = ActivityLog()
    log.count(_reading(2, [5, 7]))
    assert log.last_request is not None  # the first reading is the starting point
    log.last_request = None
    log.count(_reading(2, [5, 7]))
    assert log.last_request is None, "same counts: no request"
    log.count(_reading(2, [5, 8]))
    assert log.last_request is not None
    log.last_request = None
    log.count(_reading(2, [13]))  # one ready router pod not read, the same total
    assert log.last_request is not None, "unknown counts as activity"


def test_held_requests_wake_at_once_and_their_reports_are_taken_once() -> None:
    triggered: list[tuple[str, str]] = []

    async def trigger(namespace: str, name: str) -> None:
        triggered.append((namespace, name))

    telemetry = Telemetry(None, SETTINGS, default_metrics_url, lambda key: None, trigger)  # type: ignore[arg-type]
    key = ("ml", "resnet")

    async def reports() -> None:
        await telemetry.note_demand(key, DemandReport(event=DemandEvent.HELD, seconds=1.0))
        await telemetry.note_demand(key, DemandReport(event=DemandEvent.HELD, seconds=0.2))
        await telemetry.note_demand(key, DemandReport(event=DemandEvent.SERVED, seconds=3.5))
        await telemetry.note_demand(key, DemandReport(event=DemandEvent.TIMED_OUT, count=2))

    asyncio.run(reports())
    assert triggered == [key] * 4
    activity = telemetry.take(key).activity
    assert activity.held_since is not None
    assert activity.last_request is not None
    assert (activity.last_request - activity.held_since).total_seconds() >= 1.0  # the oldest
    assert (activity.served, activity.timed_out) == ((3.5,), 2)
    again = telemetry.take(key).activity
    assert (again.held_since, again.served, again.timed_out) == (None, (), 0)
    assert again.last_request == activity.last_request


def test_the_router_is_read_soon_while_it_lags_the_published_table_for_10_s_at_most() -> None:
    async def trigger(namespace: str, name: str) -> None:
        raise AssertionError("no trigger here")

    now = [100.0]
    telemetry = Telemetry(
        None,  # type: ignore[arg-type]
        SETTINGS,
        default_metrics_url,
        lambda key: None,
        trigger,
        lambda: now[0],
    )
    traffic = {"mode": "Router", "version": 7, "weights": [{"revision": 1, "weight": 100}]}
    md = ModelDeployment.from_body(body(status={"traffic": traffic}))
    state = _State(router=RouterReport(1, 1, (6,)))  # the router still runs version 6
    assert telemetry._router_delay(md, state) == ROUTER_CATCHUP_SECONDS
    now[0] += 9.0
    assert telemetry._router_delay(md, state) == ROUTER_CATCHUP_SECONDS
    now[0] += 1.0  # 10 s behind: a stuck router is read as usual
    assert telemetry._router_delay(md, state) == ROUTER_SECONDS
    state.router = RouterReport(1, 1, (7,))  # it caught up: the clock starts again next time
    assert telemetry._router_delay(md, state) == ROUTER_SECONDS
    assert state.router_behind_since is None
    state.router = RouterReport(1, 1, (7,))
    lagging = ModelDeployment.from_body(body(status={"traffic": {**traffic, "version": 8}}))
    assert telemetry._router_delay(lagging, state) == ROUTER_CATCHUP_SECONDS


def test_a_poke_brings_the_candidates_first_read_forward_but_not_its_analyses() -> None:
    async def trigger(namespace: str, name: str) -> None:
        raise AssertionError("no trigger without a daemon")

    now = [100.0]
    telemetry = Telemetry(
        None,  # type: ignore[arg-type]
        SETTINGS,
        default_metrics_url,
        lambda key: None,
        trigger,
        clock=lambda: now[0],
    )
    key = ("ml", "resnet")
    # The last look found no ready candidate pod: it would look again in 5 s.
    state = telemetry._states.setdefault(key, _State(canary_revision=2, canary_due=105.0))
    now[0] = 101.0
    telemetry.poke(key)  # the candidate's pod became Ready: a reconcile ran
    assert state.canary_due == 101.0, "the starting read is taken at once"
    # With a starting read taken, a poke leaves the analysis interval alone.
    state.canary = MetricsTracker(clock=lambda: now[0])
    state.canary_due = 106.0
    telemetry.poke(key)
    assert state.canary_due == 106.0
    asyncio.run(telemetry.close())
