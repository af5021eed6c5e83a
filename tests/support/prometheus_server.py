"""A real Prometheus on loopback that scrapes what the chart's monitors would, for tests.

`prometheus` (Debian's package, hack/install-prometheus.sh) runs with a 1 s scrape and rule
evaluation interval and the chart's own rules file. Its scrape jobs are the chart's PodMonitors as
`helm template` renders them: the same pod selector and the same relabelling, applied by
Prometheus itself to targets that carry the `__meta_kubernetes_*` labels kubernetes_sd would
give them. `PodDiscovery` plays kubernetes_sd: it lists the pods in kmock and writes each one
the selector matches as a file_sd target at the loopback address of the process behind its IP.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from modelops_builder.triton_local import free_port
from modelops_operator.k8s import resources as r
from tests.support.chart import Helm
from tests.support.kubernetes_emulator import Cluster

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "modelops" / "rules" / "modelops-alerts.yaml"
HELM = REPO / ".tools" / "bin" / "helm"
SCRAPE_SECONDS = 1.0
Obj = dict[str, Any]
# (pod IP, PodMonitor port name) -> "127.0.0.1:PORT" of the process that serves it.
Addresses = Callable[[str, str], str | None]


def _snake(key: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def _label_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def chart_monitors() -> dict[str, Obj]:
    """The chart's PodMonitors by name suffix (triton, router, engine-server), forced on, and
    its ServiceMonitor of the operator as "operator"."""
    helm = Helm(HELM)
    values = {
        "metrics": {
            "podMonitors": {"enabled": True, "interval": "1s"},
            "serviceMonitor": {"enabled": True},
        }
    }
    kinds = ("PodMonitor", "ServiceMonitor")
    monitors = [m for m in helm.template(values=values) if m["kind"] in kinds]
    return {
        "operator"
        if m["kind"] == "ServiceMonitor"
        else m["metadata"]["name"].removeprefix("mo-modelops-"): m
        for m in monitors
    }


@dataclass(frozen=True)
class Job:
    """One scrape job: a PodMonitor endpoint, or a static target with fixed labels."""

    name: str
    relabel: Sequence[Obj] = ()
    metric_relabel: Sequence[Obj] = ()
    selector: Mapping[str, str] = field(default_factory=dict)
    port: str = ""  # the PodMonitor endpoint's port name
    honor_labels: bool = False

    def config(self, folder: Path) -> Obj:
        out: Obj = {
            "job_name": self.name,
            "file_sd_configs": [{"files": [str(folder / f"{self.name}.json")]}],
            "honor_labels": self.honor_labels,
        }
        if self.relabel:
            out["relabel_configs"] = [{_snake(k): v for k, v in x.items()} for x in self.relabel]
        if self.metric_relabel:
            out["metric_relabel_configs"] = [
                {_snake(k): v for k, v in x.items()} for x in self.metric_relabel
            ]
        return out


def monitor_jobs(monitors: Mapping[str, Obj]) -> list[Job]:
    """A Job per monitor endpoint, with its selector, relabelling and honorLabels (the
    ServiceMonitor's target is written by the test: its pod is not in kmock)."""
    jobs = []
    for name, monitor in sorted(monitors.items()):
        if monitor["kind"] == "ServiceMonitor":
            (endpoint,) = monitor["spec"]["endpoints"]
            jobs.append(Job(name, honor_labels=bool(endpoint.get("honorLabels"))))
            continue
        selector = monitor["spec"]["selector"]["matchLabels"]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            jobs.append(
                Job(
                    f"{name}-{endpoint['port']}",
                    endpoint.get("relabelings", []),
                    endpoint.get("metricRelabelings", []),
                    selector,
                    endpoint["port"],
                )
            )
    return jobs


def write_targets(folder: Path, job: str, groups: list[Obj]) -> None:
    """file_sd: written whole and renamed, so Prometheus never reads half a file."""
    path = folder / f"{job}.json"
    text = json.dumps(groups, sort_keys=True)
    if path.exists() and path.read_text() == text:
        return
    temporary = folder / f".{job}.json.tmp"
    temporary.write_text(text)
    temporary.replace(path)


def pod_target(pod: Obj, address: str) -> Obj:
    """A file_sd group with the meta labels kubernetes_sd gives a pod."""
    meta = pod["metadata"]
    labels = {
        "__meta_kubernetes_namespace": meta.get("namespace", "default"),
        "__meta_kubernetes_pod_name": meta["name"],
        "__meta_kubernetes_pod_ip": (pod.get("status") or {}).get("podIP", ""),
    }
    for key, value in (meta.get("labels") or {}).items():
        labels[f"__meta_kubernetes_pod_label_{_label_name(key)}"] = value
    return {"targets": [address], "labels": labels}


@dataclass
class PodDiscovery:
    """kubernetes_sd for the test: kmock's pods that a Job selects, at their processes."""

    cluster: Cluster
    folder: Path
    jobs: Sequence[Job]
    addresses: Addresses

    def sync(self) -> None:
        """Write every job's targets from the pods kmock has now."""
        pods = [self.cluster.get(r.PODS, n) for n in self.cluster.names(r.PODS)]
        for job in self.jobs:
            if not job.selector:
                continue
            groups = []
            for pod in pods:
                if pod is None:
                    continue
                labels = pod["metadata"].get("labels") or {}
                if not job.selector.items() <= labels.items():
                    continue
                address = self.addresses((pod.get("status") or {}).get("podIP", ""), job.port)
                if address is not None:
                    groups.append(pod_target(pod, address))
            write_targets(self.folder, job.name, groups)


@dataclass
class Prometheus:
    """A running prometheus and its HTTP API."""

    url: str
    process: subprocess.Popen[bytes]
    folder: Path

    async def _get(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}{path}", params=params) as response,
        ):
            payload = await response.json(content_type=None)
        assert payload.get("status") == "success", f"{path} {params}: {payload}"
        return payload["data"]

    async def query(self, expr: str) -> list[Obj]:
        """Instant query now; fails the test when Prometheus refuses the expression."""
        data = await self._get("/api/v1/query", query=expr)
        return list(data["result"])

    async def query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[Obj]:
        """Range query; fails the test when Prometheus refuses the expression."""
        data = await self._get(
            "/api/v1/query_range",
            query=expr,
            start=f"{start:.3f}",
            end=f"{end:.3f}",
            step=str(step),
        )
        return list(data["result"])

    async def alerts(self) -> list[Obj]:
        """Active alerts (pending and firing)."""
        return list((await self._get("/api/v1/alerts"))["alerts"])

    async def rules(self) -> list[Obj]:
        """Every rule with its health and last error."""
        groups = (await self._get("/api/v1/rules"))["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def log(self) -> str:
        path = self.folder / "prometheus.log"
        return path.read_text()[-3000:] if path.exists() else ""


@contextlib.contextmanager
def prometheus(
    folder: Path, jobs: Sequence[Job], static: Mapping[str, list[Obj]]
) -> Iterator[Prometheus]:
    """Start prometheus over `jobs` (file_sd targets; `static` writes fixed ones) and the rules."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: run `bash hack/install-prometheus.sh` (hack/test.sh does)"
    folder.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        write_targets(folder, job.name, static.get(job.name, []))
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS:g}s",
            "scrape_timeout": f"{int(SCRAPE_SECONDS * 900)}ms",
            "evaluation_interval": f"{SCRAPE_SECONDS:g}s",
        },
        "rule_files": [str(RULES)],
        "scrape_configs": [job.config(folder) for job in jobs],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running = Prometheus(f"http://127.0.0.1:{port}", process, folder)
    try:
        _wait_ready(running)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


def _wait_ready(running: Prometheus, timeout: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {running.log()}")
        try:
            with urllib.request.urlopen(f"{running.url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus not ready after {timeout}s: {running.log()}")
