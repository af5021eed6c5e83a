"""Dashboards, alerts and the Prometheus analysis source against a REAL Prometheus.

`prometheus` (1 s scrape and rule evaluation, the chart's rules file) scrapes the real operator
(kmock), the real tritonservers behind the pods, the real router (HAProxy's exporter and the
agent) and the engine server, through the chart's own PodMonitor selectors and relabelling.

- During a canary that fails in the backend (Triton raises on every other request) and its
  rollback, every expression of every dashboard panel returns series with the labels its legend
  names (both revisions where it is per revision), every rule evaluates without error, the
  rollback alert fires naming the ModelDeployment, the alerts that must not fire do not; the
  seconds from the first failed request to the alert's firing state are printed for the README.
- With MODELOPS_PROMETHEUS_URL pointing at that Prometheus, the same failing canary is rolled
  back on Prometheus's figures as on direct scrapes, and Prometheus's counters agree with a
  direct scrape within one scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_builder.triton_local import TritonProcess, start_triton
from modelops_operator.k8s import resources as r
from modelops_operator.metrics.prometheus import Target, query_figures
from modelops_operator.render.names import build_job_name, validation_job_name
from modelops_operator.settings import Settings
from tests.support.client_mix import ClientMix
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.observed_stage import (
    DISCOVERY_S,
    RATE_INTERVAL,
    check_panels,
    check_rules,
    firing,
    watched,
)
from tests.support.operator_flow import RunOperator, finish_source, key_of, phase, summary
from tests.support.prometheus_server import (
    SCRAPE_SECONDS,
    Prometheus,
    chart_monitors,
)
from tests.support.routed_cluster import (
    INTERVAL,
    NAME,
    R1_IP,
    R2_IP,
    THRESHOLD,
    Stage,
    publish_entry,
    serving_stage,
)
from tests.support.triton_models import WIDTH, write_model

pytestmark = pytest.mark.triton
# With a canary: an autoscaler (so its series exist) that never scales, a latency objective.
SPEC_PATCH = {
    "scaling": {"minReplicas": 1, "maxReplicas": 2, "metric": "inferencesPerSecond", "target": 1e5},
    "rollout": {"canary": {"maxP99LatencyMs": 5000}},
}
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def tritons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TritonProcess]]:
    """good: y = x; failing: Triton's backend raises on every other request (HTTP 500)."""
    root = tmp_path_factory.mktemp("tritons")
    write_model(root / "good", NAME, scale=1.0)
    write_model(root / "failing", NAME, scale=1.0, fail_every=2)
    servers = {name: start_triton(root / name) for name in ("good", "failing")}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop(10.0)


@pytest.fixture(scope="module")
def monitors() -> dict[str, Obj]:
    return chart_monitors()


async def slow_build(stage: Stage, sha: str, hold_s: float) -> None:
    """The build of the stored spec, running for `hold_s` seconds (Building shows on a scrape)."""
    key = key_of(stage.cluster, NAME, stage.settings)
    await finish_source(stage.cluster, stage.settings, NAME)
    job, build_ns = build_job_name("default", NAME, key), stage.settings.operator_namespace
    await eventually(lambda: stage.cluster.get(r.JOBS, job, build_ns), what=f"build Job {sha[:6]}")
    await asyncio.sleep(hold_s)
    publish_entry(stage.store, key, WIDTH)
    await stage.cluster.finish_job(job, summary(key), namespace=build_ns)


async def router_back(stage: Stage) -> bool:
    weights = await stage.router_runs()
    return weights is not None and weights.get(1) == 100 and not weights.get(2)


async def test_every_panel_and_alert_has_data_during_a_canary_and_its_rollback(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    run_operator: RunOperator,
    tritons: dict[str, TritonProcess],
    monitors: dict[str, Obj],
    tmp_path: Path,
) -> None:
    began = time.time()
    pods = {R1_IP: tritons["good"], R2_IP: tritons["failing"]}
    fast = settings.model_copy(update={"metrics_interval_seconds": 2.0})
    async with (
        watched(tmp_path / "prometheus", cluster, monitors) as (prom, hook),
        serving_stage(
            cluster, store, fast, tmp_path, pods, run_operator, spec_patch=SPEC_PATCH, on_stage=hook
        ) as stage,
    ):
        clients = ClientMix(*stage.client_urls, NAME, short_lived=1)
        clients.start()
        try:
            await stage.cluster.update_spec(NAME, {"model": {"source": {"sha256": "b" * 64}}})
            await slow_build(stage, "b" * 64, hold_s=3.0)
            await stage.start_pod(2, R2_IP)
            job = validation_job_name(NAME, 2)
            await eventually(lambda: stage.cluster.get(r.JOBS, job), what="validation Job")
            await stage.cluster.finish_validation(job)  # the failure shows only with clients
            await eventually(lambda: clients.failures(), 20, "a client request failing")
            first_failure = min(o.at for o in clients.failures())
            alert = await firing(prom, "ModelDeploymentRolledBack", 40)
            fired = time.monotonic()
            assert phase(stage.cluster, NAME) == "RolledBack"
            await eventually(lambda: router_back(stage), 10, "router back at r1 100%")
            await asyncio.sleep(3 * float(RATE_INTERVAL[:-1]) / 2)
        finally:
            clients.stop()
        ended = time.time()
        seconds = fired - first_failure
        print(f"\nfirst failed request -> ModelDeploymentRolledBack firing: {seconds:.1f} s")
        # The analysis rolls back within failureThreshold x interval + 5 s; the alert adds at most
        # a scrape and an evaluation (1 s each here).
        assert seconds <= THRESHOLD * INTERVAL + 5 + 2
        assert alert["labels"]["namespace"] == "default"
        assert alert["labels"]["modeldeployment"] == NAME
        assert f"ModelDeployment {NAME} in namespace default" in alert["annotations"]["description"]

        await check_panels(prom, began, ended)
        await check_rules(prom, began, ended)


async def _direct(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("nv_inference_request_success", "nv_inference_request_failure"):
            # The parser names counter samples `_total`; Prometheus keeps Triton's own names.
            out[family.name] = sum(s.value for s in family.samples if s.name.endswith("_total"))
    return out


async def _rates(prom: Prometheus, pod: str) -> dict[str, float]:
    out = {}
    for name in ("nv_inference_request_success", "nv_inference_request_failure"):
        selector = f'{{pod="{pod}", modeldeployment="{NAME}"}}'
        result = await prom.query(f"sum(rate({name}{selector}[{RATE_INTERVAL}]))")
        out[name] = float(result[0]["value"][1]) if result else 0.0
    return out


async def _scraped(prom: Prometheus, pod: str) -> dict[str, float]:
    out = {}
    for name in ("nv_inference_request_success", "nv_inference_request_failure"):
        result = await prom.query(f'sum({name}{{pod="{pod}", modeldeployment="{NAME}"}})')
        out[name] = float(result[0]["value"][1]) if result else 0.0
    return out


async def test_a_failing_canary_is_rolled_back_on_prometheus_figures(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    run_operator: RunOperator,
    tritons: dict[str, TritonProcess],
    monitors: dict[str, Obj],
    tmp_path: Path,
) -> None:
    pods = {R1_IP: tritons["good"], R2_IP: tritons["failing"]}
    async with watched(tmp_path / "prometheus", cluster, monitors) as (prom, hook):
        # Triton's figures come only from Prometheus: the operator's scrape URLs lead nowhere.
        sourced = settings.model_copy(update={"prometheus_url": prom.url})

        def unreachable(**options: Any) -> Any:
            options["metrics_url"] = lambda pod: "http://127.0.0.1:9/metrics"
            return run_operator(**options)

        async with serving_stage(
            cluster, store, sourced, tmp_path, pods, unreachable, mode="Replicas", on_stage=hook
        ) as stage:
            clients = ClientMix(*stage.client_urls, NAME, short_lived=2)
            clients.start()
            try:
                await stage.cluster.update_spec(NAME, {"model": {"source": {"sha256": "b" * 64}}})
                await stage.build("b" * 64, WIDTH)
                await stage.start_pod(2, R2_IP)
                job = validation_job_name(NAME, 2)
                await eventually(lambda: stage.cluster.get(r.JOBS, job), what="validation Job")
                await stage.cluster.finish_validation(job)
                await eventually(lambda: clients.failures(), 20, "a client request failing")
                first_failure = min(o.at for o in clients.failures())
                pod = next(n for n in cluster.names(r.PODS) if "-r2-" in n)
                # A new pod is a target once discovery hands it over (at most every 5 s).
                await eventually(
                    lambda: prom.query(
                        f'increase(nv_inference_request_failure{{pod="{pod}"}}[{RATE_INTERVAL}])'
                        " > 0"
                    ),
                    DISCOVERY_S + 3,
                    "Prometheus scraping the canary's failures",
                )
                # Under load: Prometheus's last sample trails the page by at most one scrape.
                rates = await _rates(prom, pod)
                before = await _direct(tritons["failing"].metrics_url)
                scraped = await _scraped(prom, pod)
                after = await _direct(tritons["failing"].metrics_url)
                async with aiohttp.ClientSession() as session:
                    figures = await query_figures(
                        session,
                        prom.url,
                        Target(NAME, "default", (pod,)),
                        window_s=2 * INTERVAL,
                        at=time.time(),
                    )
                await eventually(lambda: phase(cluster, NAME) == "RolledBack", 30, "RolledBack")
                rolled_back = time.monotonic()
            finally:
                clients.stop()
            await asyncio.sleep(2.5)  # two scrapes after the last request
            assert await _scraped(prom, pod) == await _direct(tritons["failing"].metrics_url)
    for name, value in scraped.items():
        # One scrape interval of requests (plus the scrape's own time) at the measured rate.
        lag = rates[name] * (SCRAPE_SECONDS + 0.5) + 2
        assert before[name] - lag <= value <= after[name], (name, value, before, after, rates)
    assert not isinstance(figures, Exception)
    assert getattr(figures, "failures_by_reason", {}).get("BACKEND", 0) > 0, figures
    # The budget of direct scrapes (failureThreshold x interval + 5 s), plus what Prometheus adds:
    # discovering the new pod and one scrape.
    seconds = rolled_back - first_failure
    print(f"\nfirst failed request -> RolledBack on Prometheus's figures: {seconds:.1f} s")
    assert seconds <= THRESHOLD * INTERVAL + 5 + DISCOVERY_S + SCRAPE_SECONDS
    degraded = next(c for c in stage.status()["conditions"] if c["type"] == "Degraded")
    assert "errorRate" in degraded["message"], degraded
