"""What tests/integration/test_observability.py checks against its real Prometheus: the chart's
monitors pointed at a routed stage's processes (`watched`), every dashboard expression with data
and its legend's labels (`check_panels`), every rule evaluating cleanly with what it reads
present (`check_rules`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.prometheus_server import (
    RULES,
    PodDiscovery,
    Prometheus,
    monitor_jobs,
    pod_target,
    prometheus,
    write_targets,
)
from tests.support.routed_cluster import NAME, ROUTER_IP, Stage

Obj = dict[str, Any]
DISCOVERY_S = 5.0  # Prometheus's discovery manager hands new targets over at most this often

DASHBOARDS = sorted((Path(__file__).parents[2] / "charts/modelops/dashboards").glob("*.json"))
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval at a 1 s scrape: four samples

MUST_NOT_FIRE = {
    "ModelDeploymentClientErrors",  # the stable revision serves clients well
    "ModelDeploymentRouterTableNotApplied",
    "ModelopsNoLeader",
    "ModelopsEngineServerDown",
    "ModelopsWatchStale",
    "ModelDeploymentCanaryStuck",
}


@contextlib.asynccontextmanager
async def watched(workdir: Path, cluster: Cluster, monitors: dict[str, Obj]) -> AsyncIterator[Any]:
    """Prometheus over the chart's monitors and the operator; `hook(stage)` points it at the
    stage's processes; kubernetes_sd is played every 0.3 s."""
    jobs = monitor_jobs(monitors)
    pods_jobs = [j for j in jobs if j.name not in ("operator", "engine-server-http")]
    state: dict[str, Any] = {}
    running: Prometheus

    async def hook(stage: Stage) -> None:
        assert stage.settings.routes_url is not None
        operator = stage.settings.routes_url.removeprefix("http://")
        # What the ServiceMonitor's relabelling puts on the operator's series.
        labels = {"namespace": "modelops-system", "pod": "mo-modelops-0"}
        write_targets(workdir, "operator", [{"targets": [operator], "labels": labels}])
        engine = {"metadata": {"name": "mo-modelops-store-0", "namespace": "modelops-system"}}
        address = str(stage.settings.store_server).removeprefix("http://")
        write_targets(workdir, "engine-server-http", [pod_target(engine, address)])

        def address_of(ip: str, port: str) -> str | None:
            if ip in stage.pods and port == "metrics":
                return f"127.0.0.1:{stage.pods[ip].metrics_port}"
            if ip == ROUTER_IP and stage.router is not None:
                config = stage.router.router.config
                assert config is not None
                ports = {"stats": config.stats_port, "agent": stage.router.agent_port}
                return f"127.0.0.1:{ports[port]}" if port in ports else None
            return None

        state["discovery"] = PodDiscovery(cluster, workdir, pods_jobs, address_of)
        # As on a cluster, the operator is scraped before the ModelDeployment exists.
        await eventually(
            lambda: running.query('up{job="operator"} == 1'), DISCOVERY_S + 5, "operator scraped"
        )

    async def discover() -> None:
        while True:
            if "discovery" in state:
                state["discovery"].sync()
            await asyncio.sleep(0.3)

    with prometheus(workdir, jobs, {}) as running:
        task = asyncio.create_task(discover())
        try:
            yield running, hook
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def substitute(expr: str) -> str:
    """Grafana's variables, as the dashboard would send them for ModelDeployment default/m."""
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$namespace", "default")
        .replace("$modeldeployment", NAME)
    )


def panel_expressions() -> list[tuple[str, str, str, str]]:
    """(dashboard, title, expression, legend) of every panel target and annotation."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                out.append((path.stem, panel["title"], target["expr"], target["legendFormat"]))
        for item in board["annotations"]["list"]:
            if "expr" in item:
                out.append((path.stem, item["name"], item["expr"], item["titleFormat"]))
    return out


def alert_rules() -> list[Obj]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


async def firing(prom: Prometheus, name: str, within_s: float) -> Obj:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for alert in await prom.alerts():
            if alert["labels"]["alertname"] == name and alert["state"] == "firing":
                return alert
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} not firing after {within_s}s: {await prom.alerts()}")


async def check_panels(prom: Prometheus, began: float, ended: float) -> None:
    """Every expression parses and returns series with the labels its legend names. With
    MODELOPS_DASHBOARD_DUMP=FILE the series are written there (hack/render-dashboards.py draws
    docs/observability.md's pictures from them)."""
    empty = []
    dump: list[Obj] = []
    for board, title, expr, legend in panel_expressions():
        if "Scaled" in expr:  # no scaling in this run: the expression must still parse
            await prom.query(substitute(expr))
            continue
        series = await prom.query_range(substitute(expr), began, ended)
        if not series:
            empty.append(f"{board} / {title}: {expr}")
            continue
        wanted = re.findall(r"\{\{(\w+)\}\}", legend)
        for each in series:
            missing = [label for label in wanted if not each["metric"].get(label)]
            assert not missing, f"{board} / {title}: no {missing} on {each['metric']}"
        dump.append({"board": board, "title": title, "legend": legend, "series": series})
        values = [float(v) for each in series for _, v in each["values"]]
        assert any(math.isfinite(v) for v in values), f"{board} / {title}: only NaN"
        if board == "modeldeployment" and "revision" in wanted:
            revisions = {each["metric"]["revision"] for each in series}
            assert {"1", "2"} <= revisions, f"{title}: revisions {revisions}"
    assert not empty, "No data:\n" + "\n".join(empty)
    if target := os.environ.get("MODELOPS_DASHBOARD_DUMP"):
        text = json.dumps({"began": began, "ended": ended, "panels": dump})
        await asyncio.to_thread(Path(target).write_text, text)


async def check_rules(prom: Prometheus, began: float, ended: float) -> None:
    """Every rule evaluates cleanly; what each alert reads exists; the quiet ones stay quiet."""
    rules = await prom.rules()
    assert len(rules) == len(alert_rules())
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
    active = {a["labels"]["alertname"] for a in await prom.alerts()}
    assert not active & MUST_NOT_FIRE, active
    for rule in alert_rules():
        names = set(
            re.findall(r"\b(modelops_[a-z_]+|nv_[a-z_]+|modelops:[a-z_0-9:]+)\b", rule["expr"])
        )
        names.discard("modelops_")
        for name in names:
            series = await prom.query_range(f"count by (__name__) ({name})", began, ended)
            assert series, f"{rule.get('alert') or rule.get('record')}: no {name} in this run"
