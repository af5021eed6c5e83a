"""The benchmark's processes: the emulator it serves, the operators it starts (modelops or the
one-handler kopf floor, each in its own process), and what it reads of them (/proc, /metrics)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import kmock

from modelops_operator.k8s import resources as r
from tests.support.apiserver import FaithfulEmulator
from tests.support.kubernetes_emulator import rbac_call

ROOT = Path(__file__).resolve().parents[1]
# Only the request being served: kmock matches each new request against its log per reaction.
KEEP_REQUESTS = 1
OPERATOR_AGENTS = ("modelops-operator", "kopf", "floor")


class ShortLogEmulator(FaithfulEmulator):
    """The faithful emulator with its request logs trimmed and an index per resource; records
    when each ModelDeployment's Job arrived and every operator request by (resource, verb)."""

    _index: dict[Any, dict[tuple[str | None, str], Any]]

    job_times: dict[str, float]
    operator_requests: int
    verbs: Counter[tuple[str, str]]
    job_posts: Counter[str]
    new_jobs: asyncio.Queue[tuple[str, str]]  # (namespace, name) of each created Job

    def start_recording(self) -> None:
        """Reset the counters."""
        self.new_jobs = asyncio.Queue()
        self.job_times = {}
        self.job_posts = Counter()
        self.operator_requests = 0
        self.verbs = Counter()
        self._index = {}

    def _KubernetesEmulator__get_objs(self, request: kmock.Request, strict: bool) -> list[Any]:
        # kmock scans every object of every resource per request; an API server has indexes.
        found = []
        for (namespace, name), key in self._index.get(request.resource, {}).items():
            ns_ok = namespace == request.namespace or (not strict and request.namespace is None)
            if ns_ok and (request.name is None or name == request.name):
                found.append(self._objects[key])
        return found

    async def _handle(self, request: kmock.Request) -> Any:
        del self._requests[:-KEEP_REQUESTS]
        for payload in self._payloads:
            del payload._requests[:-KEEP_REQUESTS]
        if request.resource is not None and str(request.method).upper().endswith("POST"):
            meta = (request.data or {}).get("metadata") or {}
            namespace = request.namespace or meta.get("namespace")
            index = self._index.setdefault(request.resource, {})
            index[(namespace, meta.get("name"))] = (request.resource, namespace, meta.get("name"))
        if str(request.headers.get("User-Agent", "")).startswith(OPERATOR_AGENTS):
            self.operator_requests += 1
            call = rbac_call(request)
            if call is not None:
                self.verbs[(call[1], call[2])] += 1
        res = request.resource
        if (
            res is not None
            and res.plural == "jobs"
            and str(request.method).upper().endswith("POST")
        ):
            labels = ((request.data or {}).get("metadata") or {}).get("labels") or {}
            owner = labels.get("modelops.dev/deployment")
            self.job_posts[str(((request.data or {}).get("metadata") or {}).get("name"))] += 1
            if owner and owner not in self.job_times:
                self.job_times[owner] = time.perf_counter()
            meta = (request.data or {}).get("metadata") or {}
            self.new_jobs.put_nowait((request.namespace or meta.get("namespace"), meta.get("name")))
        return await super()._handle(request)


def start_child(
    kind: str, url: str, store: Path, port: int, interval: float, identity: str = "bench"
) -> tuple[subprocess.Popen[bytes], Any]:
    """The operator subprocess (modelops or the floor), its output into a temp log file."""
    child_path = [str(ROOT / "operator"), str(ROOT / "builder")]
    child_path += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    log = open(tempfile.mktemp(prefix="modelops-bench-", suffix=".log"), "w")  # noqa: SIM115
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_operator",
            "--child",
            kind,
            url,
            str(store),
            str(port),
            str(interval),
            identity,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(child_path)},
    )
    return child, log


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_stat(pid: int) -> tuple[float, float, float]:
    """(cpu seconds, RSS MiB, peak RSS MiB) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss = int(status["VmRSS"].split()[0]) / 1024
    hwm = int(status["VmHWM"].split()[0]) / 1024
    return cpu, rss, hwm


async def scrape(port: int) -> dict[str, float]:
    """The operator's own /metrics as {series: value}."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
    raw = (await reader.read()).decode()
    writer.close()
    out: dict[str, float] = {}
    for line in raw.split("\r\n\r\n", 1)[-1].splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def machine() -> str:
    """CPU model and count, memory, Python: where the figures were measured."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return (
        f"{os.cpu_count()} vCPUs ({model}), {mem:.0f} GiB, Python {sys.version.split()[0]}, "
        f"load {os.getloadavg()[0]:.1f} at start"
    )


def child(url: str, store: str, port: int, interval: float, identity: str) -> None:
    """The operator process: kopf + handlers, logged in to the emulator."""
    import logging

    import kopf

    from modelops_operator.handlers import OperatorOptions, build
    from modelops_operator.observability import configure_logging
    from modelops_operator.settings import Settings
    from tests.support.kubernetes_emulator import emulator_login

    configure_logging("json", verbose=False)
    logging.getLogger().setLevel(logging.WARNING)

    settings = Settings(store_mount_path=store, reconcile_interval_seconds=interval)
    registry, _ = build(
        OperatorOptions(
            settings=settings,
            login=emulator_login(url),
            metrics_host="127.0.0.1",
            metrics_port=port,
            identity=identity,
        )
    )
    asyncio.run(kopf.operator(registry=registry, clusterwide=True))


def floor_child(url: str, port: int) -> None:
    """The floor: kopf with one on.create handler that POSTs one Job (and nothing else)."""
    import logging

    import aiohttp
    import aiohttp.web
    import kopf

    logging.getLogger().setLevel(logging.WARNING)
    registry = kopf.OperatorRegistry()
    session: dict[str, aiohttp.ClientSession] = {}

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False
        settings.peering.standalone = True
        session["s"] = aiohttp.ClientSession(headers={"User-Agent": "floor"})
        app = aiohttp.web.Application()
        app.router.add_get("/metrics", lambda _: aiohttp.web.Response(text=""))
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()

    @kopf.on.create("modelops.dev", "v1alpha1", "modeldeployments", registry=registry)
    async def create(body: kopf.Body, **_: Any) -> None:
        name, namespace = body.metadata.name, body.metadata.namespace
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"{name}-build",
                "namespace": namespace,
                "labels": {"modelops.dev/deployment": name},
            },
            "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "x"}]}}},
        }
        async with session["s"].post(f"{url}{r.JOBS.path(namespace)}", json=job) as resp:
            resp.raise_for_status()

    asyncio.run(kopf.operator(registry=registry, clusterwide=True))
