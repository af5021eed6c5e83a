"""Operator benchmark: N ModelDeployments against kmock, one operator process.

The operator runs in a subprocess (so its RSS and CPU are its own) against kmock's
KubernetesEmulator in this process, with kmock's request log kept short (stock kmock
rescans its whole log on every request), labelSelector honoured and resourceVersion bumped as a
real API server does. ModelDeployments are created at --rate per second (default 60, above the
50/s target; 0: as fast as possible); the figures are the time until every build Job exists,
create -> Job latency percentiles, the operator's RSS, API requests per reconcile, and its CPU
while idle.

    .venv/bin/python -m bench.bench_operator            # 1,000 ModelDeployments
    .venv/bin/python -m bench.bench_operator --count 100 --idle 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kmock

from modelops_operator.k8s import resources as r
from tests.support.kubernetes_emulator import declare_resources

ROOT = Path(__file__).resolve().parents[1]


RESULTS = ROOT / "bench" / "results" / "operator.json"
# Only the request being served: kmock matches each new request against its log per reaction.
KEEP_REQUESTS = 1
OPERATOR_AGENTS = ("modelops-operator", "kopf")
TARGETS = {"p99_ms": 300.0, "per_second": 50.0, "rss_mib": 200.0}


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """An equality-based labelSelector (`a=b,c=d`), as the operator sends them."""
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class ShortLogEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock with its request logs trimmed, and two API-server behaviours it lacks.

    A real API server filters LISTs by labelSelector (stock kmock returns the whole namespace,
    so every reconcile would decode every Job of the benchmark) and bumps resourceVersion on
    every write (without that, kopf cannot tell its own patch's echo from an older event and
    runs on.create twice). Also records when each ModelDeployment's Job arrived.
    """

    _version = 1000
    _index: dict[Any, dict[tuple[str | None, str], Any]]

    job_times: dict[str, float]
    operator_requests: int

    def start_recording(self) -> None:
        """Reset the counters."""
        self.job_times = {}
        self.operator_requests = 0
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
        self._bump(request)
        if request.resource is not None and str(request.method).upper().endswith("POST"):
            meta = (request.data or {}).get("metadata") or {}
            namespace = request.namespace or meta.get("namespace")
            index = self._index.setdefault(request.resource, {})
            index[(namespace, meta.get("name"))] = (request.resource, namespace, meta.get("name"))
        if str(request.headers.get("User-Agent", "")).startswith(OPERATOR_AGENTS):
            self.operator_requests += 1
        res = request.resource
        if (
            res is not None
            and res.plural == "jobs"
            and str(request.method).upper().endswith("POST")
        ):
            labels = ((request.data or {}).get("metadata") or {}).get("labels") or {}
            owner = labels.get("modelops.dev/deployment")
            if owner and owner not in self.job_times:
                self.job_times[owner] = time.perf_counter()
        return await super()._handle(request)

    def _bump(self, request: kmock.Request) -> None:
        method = str(request.method).upper()
        if not (method.endswith("POST") or method.endswith("PATCH")) or request.resource is None:
            return
        self._version += 1
        version = str(self._version)
        data = request.data
        if isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if isinstance(meta, dict):
                meta["resourceVersion"] = version
        elif isinstance(data, list):  # a JSON patch (kopf's finalizers): replace it last
            data.append({"op": "replace", "path": "/metadata/resourceVersion", "value": version})

    async def _serve_list(self, request: kmock.Request) -> Any:
        payload = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            payload["items"] = [
                item
                for item in payload["items"]
                if selector_matches(selector, (item.get("metadata") or {}).get("labels") or {})
            ]
        return payload


def start_child(url: str, store: Path, port: int) -> tuple[subprocess.Popen[bytes], Any]:
    """The operator subprocess, its output into a temp log file."""
    child_path = [str(ROOT / "operator"), str(ROOT / "builder")]
    child_path += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    log = open(tempfile.mktemp(prefix="modelops-bench-", suffix=".log"), "w")  # noqa: SIM115
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_operator", "--child", url, str(store), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(child_path)},
    )
    return child, log


def spec(i: int) -> dict[str, Any]:
    """A valid ModelDeployment spec with its own model digest."""
    return {
        "model": {
            "source": {
                "uri": f"https://models.example.com/m{i}.onnx",
                "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
            },
            "format": "onnx",
        },
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 1},
    }


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


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def create_all(api: kmock.KubernetesEmulator, count: int, rate: float) -> dict[str, float]:
    """POST `count` ModelDeployments at `rate` per second; returns each one's send time."""
    sent: dict[str, float] = {}
    gate = asyncio.Semaphore(32)
    start = time.perf_counter()

    async def one(i: int) -> None:
        name = f"md-{i:05d}"
        if rate > 0:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        async with gate:
            body = {
                "apiVersion": "modelops.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {
                    "name": name,
                    "namespace": "bench",
                    "uid": f"uid-{i}",
                    "resourceVersion": "1",
                    "generation": 1,
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": spec(i),
            }
            sent[name] = time.perf_counter()
            resp = await api.post(r.MODELDEPLOYMENTS.path("bench"), json=body)
            async with resp:
                assert resp.status < 300, await resp.text()

    await asyncio.gather(*(one(i) for i in range(count)))
    return sent


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run the scenario and return the figures."""
    store = Path(tempfile.mkdtemp(prefix="modelops-bench-store-"))
    port = free_port()
    async with ShortLogEmulator() as api, kmock.Server(api):
        declare_resources(api)
        api.start_recording()
        url = str(api.url).rstrip("/")
        child, log = start_child(url, store, port)
        try:
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline:
                try:
                    await scrape(port)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # the watch streams open after startup
            cpu0, rss0, _ = proc_stat(child.pid)
            own0 = time.process_time()
            t0 = time.perf_counter()
            sent = await create_all(api, args.count, args.rate)
            created = time.perf_counter()
            last_report = time.perf_counter()
            while len(api.job_times) < args.count and time.perf_counter() - t0 < args.timeout:
                await asyncio.sleep(0.05)
                if time.perf_counter() - last_report > 5:
                    last_report = time.perf_counter()
                    print(f"  {len(api.job_times)}/{args.count} Jobs", file=sys.stderr)
            done = max(api.job_times.values(), default=time.perf_counter())
            await asyncio.sleep(1.0)  # let the status patches and echoes settle
            cpu1, rss1, hwm = proc_stat(child.pid)
            api_cpu = time.process_time() - own0
            metrics = await scrape(port)
            requests_busy = api.operator_requests
            await asyncio.sleep(args.idle)
            cpu2, rss2, _ = proc_stat(child.pid)
            requests_idle = api.operator_requests - requests_busy
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
            log.close()
    latencies = [(api.job_times[n] - sent[n]) * 1000 for n in sent if n in api.job_times]
    reconciles = sum(v for k, v in metrics.items() if k.startswith("modelops_reconciles_total"))
    own_requests = metrics.get("modelops_api_requests", 0.0)
    return {
        "count": args.count,
        "rate_requested": args.rate,
        "jobs_created": len(api.job_times),
        "seconds_to_all_jobs": round(done - t0, 2),
        "create_seconds": round(created - t0, 2),
        "per_second": round(len(api.job_times) / max(done - t0, 1e-9), 1),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
        "rss_start_mib": round(rss0, 1),
        "rss_mib": round(rss1, 1),
        "rss_after_idle_mib": round(rss2, 1),
        "rss_peak_mib": round(hwm, 1),
        "cpu_seconds_busy": round(cpu1 - cpu0, 2),
        "cpu_ms_per_md": round((cpu1 - cpu0) * 1000 / max(args.count, 1), 2),
        "api_server_cpu_seconds_busy": round(api_cpu, 2),
        "idle_seconds": args.idle,
        "idle_cpu_percent": round((cpu2 - cpu1) / args.idle * 100, 2),
        "idle_requests": requests_idle,
        "reconciles": int(reconciles),
        "operator_requests": int(own_requests),
        "operator_requests_per_reconcile": round(own_requests / max(reconciles, 1), 2),
        "all_requests_incl_kopf": requests_busy,
        "all_requests_per_md": round(requests_busy / max(args.count, 1), 2),
    }


def table(res: dict[str, Any]) -> str:
    """The markdown table of the figures against the targets."""
    rows = [
        ("ModelDeployments", res["count"], ""),
        ("build Jobs created", res["jobs_created"], ""),
        ("time until every Job exists", f"{res['seconds_to_all_jobs']} s", ""),
        ("throughput", f"{res['per_second']} /s", f">= {TARGETS['per_second']:.0f} /s"),
        ("create -> Job p50", f"{res['p50_ms']} ms", ""),
        ("create -> Job p99", f"{res['p99_ms']} ms", f"< {TARGETS['p99_ms']:.0f} ms"),
        ("operator RSS (after all created)", f"{res['rss_mib']} MiB", "< 200 MiB"),
        ("operator RSS peak", f"{res['rss_peak_mib']} MiB", ""),
        ("operator CPU per ModelDeployment", f"{res['cpu_ms_per_md']} ms", ""),
        (
            "operator CPU busy / kmock CPU busy",
            f"{res['cpu_seconds_busy']} s / {res['api_server_cpu_seconds_busy']} s",
            "",
        ),
        ("operator API requests per reconcile", res["operator_requests_per_reconcile"], ""),
        ("all requests per ModelDeployment (incl. kopf)", res["all_requests_per_md"], ""),
        (f"CPU idle ({res['idle_seconds']} s)", f"{res['idle_cpu_percent']} %", "near 0"),
        ("requests while idle", res["idle_requests"], ""),
    ]
    lines = ["| figure | value | target |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def child(url: str, store: str, port: int) -> None:
    """The operator process: kopf + handlers, logged in to the emulator."""
    import logging

    import kopf

    from modelops_operator.handlers import OperatorOptions, build
    from modelops_operator.observability import configure_logging
    from modelops_operator.settings import Settings

    configure_logging("json", verbose=False)
    logging.getLogger().setLevel(logging.WARNING)

    async def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    settings = Settings(store_mount_path=store)
    registry, _ = build(
        OperatorOptions(
            settings=settings,
            login=login,
            initial_streaming=True,
            metrics_host="127.0.0.1",
            metrics_port=port,
        )
    )
    asyncio.run(kopf.operator(registry=registry, clusterwide=True))


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="ModelDeployments (default 1000)")
    parser.add_argument("--rate", type=float, default=60.0, help="creates per second; 0: burst")
    parser.add_argument("--idle", type=float, default=10.0, help="idle window in seconds")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    parser.add_argument(
        "--child", nargs=3, metavar=("URL", "STORE", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    res = asyncio.run(bench(args))
    print(table(res))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    ok = res["jobs_created"] == res["count"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
