"""Operator benchmark: N ModelDeployments against kmock, modelops and a one-handler floor.

Each operator runs in a subprocess (so its RSS and CPU are its own) against a fresh
tests.support.apiserver.FaithfulEmulator in this process (resourceVersions, label selectors,
initial-events bookmarks), with kmock's request log kept short (stock kmock rescans its whole
log on every request). ModelDeployments are created at --rate per second (default 60; 0: as
fast as possible). Figures per operator: time until every build Job exists, create -> Job
latency percentiles, RSS and bytes per cached object, API requests by verb and per reconcile,
LISTs per reconcile, and CPU and requests while idle (the safety net fires during the idle
window: --interval). The floor is a kopf operator with one on.create handler that POSTs one
Job; modelops' figures are also given as ratios to it.

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
from collections import Counter
from pathlib import Path
from typing import Any

import kmock

from modelops_operator.k8s import resources as r
from tests.support.apiserver import FaithfulEmulator
from tests.support.kubernetes_emulator import declare_resources, rbac_call

ROOT = Path(__file__).resolve().parents[1]


RESULTS = ROOT / "bench" / "results" / "operator.json"
# Only the request being served: kmock matches each new request against its log per reaction.
KEEP_REQUESTS = 1
OPERATOR_AGENTS = ("modelops-operator", "kopf", "floor")
TARGETS = {"p99_ms": 1000.0, "throughput_ratio": 0.8, "rss_mib": 200.0, "idle_cpu_percent": 2.0}


class ShortLogEmulator(FaithfulEmulator):
    """The faithful emulator with its request logs trimmed and an index per resource; records
    when each ModelDeployment's Job arrived and every operator request by (resource, verb)."""

    _index: dict[Any, dict[tuple[str | None, str], Any]]

    job_times: dict[str, float]
    operator_requests: int
    verbs: Counter[tuple[str, str]]
    job_posts: Counter[str]

    def start_recording(self) -> None:
        """Reset the counters."""
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


async def run_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One operator (modelops or the floor) against a fresh emulator: the figures."""
    store = Path(tempfile.mkdtemp(prefix="modelops-bench-store-"))
    port = free_port()
    async with ShortLogEmulator() as api, kmock.Server(api):
        declare_resources(api)
        api.start_recording()
        url = str(api.url).rstrip("/")
        child, log = start_child(kind, url, store, port, args.interval)
        try:
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline:
                try:
                    await scrape(port)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            await asyncio.sleep(1.5)  # the watch streams open (and the Lease is taken)
            cpu0, rss0, _ = proc_stat(child.pid)
            own0 = time.process_time()
            api.verbs.clear()
            t0 = time.perf_counter()
            sent = await create_all(api, args.count, args.rate)
            created = time.perf_counter()
            last_report = time.perf_counter()
            while len(api.job_times) < args.count and time.perf_counter() - t0 < args.timeout:
                await asyncio.sleep(0.05)
                if time.perf_counter() - last_report > 5:
                    last_report = time.perf_counter()
                    print(f"  {kind}: {len(api.job_times)}/{args.count} Jobs", file=sys.stderr)
            done = max(api.job_times.values(), default=time.perf_counter())
            await asyncio.sleep(1.0)  # let the status patches and echoes settle
            cpu1, rss1, hwm = proc_stat(child.pid)
            api_cpu = time.process_time() - own0
            metrics = await scrape(port)
            busy = Counter(api.verbs)
            requests_busy = api.operator_requests
            cpu_idle0, _, _ = proc_stat(child.pid)
            idle0 = Counter(api.verbs)
            requests_idle0 = api.operator_requests
            await asyncio.sleep(args.idle)
            cpu2, rss2, _ = proc_stat(child.pid)
            idle = api.verbs - idle0
            requests_idle = api.operator_requests - requests_idle0
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                # Off the loop: the operator releases its Lease through this very server.
                await asyncio.to_thread(child.wait, 30)
            except subprocess.TimeoutExpired:
                child.kill()
            log.close()
    latencies = [(api.job_times[n] - sent[n]) * 1000 for n in sent if n in api.job_times]
    reconciles = sum(v for k, v in metrics.items() if k.startswith("modelops_reconciles_total"))
    reconciles = reconciles or float(len(api.job_times))  # the floor: one handler call per MD
    cached = metrics.get("modelops_cached_objects", 0.0)
    per_verb = Counter[str]()
    for (resource, verb), n in busy.items():
        if resource != "leases":
            per_verb[verb] += n
    lease_idle = sum(n for (resource, _), n in idle.items() if resource == "leases")
    minutes = args.idle / 60
    return {
        "operator": kind,
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
        "rss_kib_per_md": round((rss1 - rss0) * 1024 / max(args.count, 1), 1),
        "cached_objects": int(cached),
        "cached_bytes_per_object": round(metrics.get("modelops_cached_bytes", 0.0) / cached)
        if cached
        else None,
        "cpu_seconds_busy": round(cpu1 - cpu0, 2),
        "cpu_ms_per_md": round((cpu1 - cpu0) * 1000 / max(args.count, 1), 2),
        "api_server_cpu_seconds_busy": round(api_cpu, 2),
        "reconciles": int(reconciles),
        "requests_busy": requests_busy,
        "requests_per_md": round(requests_busy / max(args.count, 1), 2),
        "requests_per_reconcile": round(sum(per_verb.values()) / reconciles, 2),
        "requests_per_reconcile_by_verb": {
            verb: round(n / reconciles, 2) for verb, n in sorted(per_verb.items())
        },
        "lists_per_reconcile": round(per_verb.get("list", 0) / reconciles, 3),
        "requests_by_resource_verb": {f"{k[0]} {k[1]}": n for k, n in sorted(busy.items())},
        "safety_net_interval_seconds": args.interval if kind == "modelops" else None,
        "idle_seconds": args.idle,
        "idle_cpu_percent": round((cpu2 - cpu_idle0) / args.idle * 100, 2),
        "idle_requests_per_minute": round((requests_idle - lease_idle) / minutes, 1),
        "idle_lease_requests_per_minute": round(lease_idle / minutes, 1),
        "idle_requests_by_resource_verb": {f"{k[0]} {k[1]}": n for k, n in sorted(idle.items())},
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """The floor, then modelops, in one run; modelops' figures as ratios to the floor's."""
    floor = await run_one("floor", args)
    ours = await run_one("modelops", args)

    def ratio(key: str) -> float | None:
        a, b = ours.get(key), floor.get(key)
        return round(a / b, 2) if a is not None and b else None

    return {
        "machine": machine(),
        "modelops": ours,
        "floor": floor,
        "ratios_modelops_to_floor": {
            key: ratio(key)
            for key in ("per_second", "p50_ms", "p99_ms", "rss_mib", "requests_per_md")
        },
        "targets": TARGETS,
    }


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


def table(res: dict[str, Any]) -> str:
    """The markdown table: modelops, the floor, the ratio, the target."""
    ours, floor, ratios = res["modelops"], res["floor"], res["ratios_modelops_to_floor"]
    verbs = ", ".join(f"{v} {n}" for v, n in ours["requests_per_reconcile_by_verb"].items())
    rows = [
        ("build Jobs created", ours["jobs_created"], floor["jobs_created"], "", ""),
        (
            "throughput (/s)",
            ours["per_second"],
            floor["per_second"],
            ratios["per_second"],
            ">= 0.8x",
        ),
        ("create -> Job p50 (ms)", ours["p50_ms"], floor["p50_ms"], ratios["p50_ms"], ""),
        ("create -> Job p99 (ms)", ours["p99_ms"], floor["p99_ms"], ratios["p99_ms"], "< 1000"),
        (
            "RSS after all created (MiB)",
            ours["rss_mib"],
            floor["rss_mib"],
            ratios["rss_mib"],
            "< 200",
        ),
        (
            "RSS growth per ModelDeployment (KiB)",
            ours["rss_kib_per_md"],
            floor["rss_kib_per_md"],
            "",
            "",
        ),
        (
            "cached objects / bytes each",
            f"{ours['cached_objects']} / {ours['cached_bytes_per_object']}",
            "-",
            "",
            "",
        ),
        ("CPU per ModelDeployment (ms)", ours["cpu_ms_per_md"], floor["cpu_ms_per_md"], "", ""),
        (
            "requests per ModelDeployment",
            ours["requests_per_md"],
            floor["requests_per_md"],
            ratios["requests_per_md"],
            "",
        ),
        (
            "requests per reconcile (by verb)",
            f"{ours['requests_per_reconcile']} ({verbs})",
            floor["requests_per_reconcile"],
            "",
            "",
        ),
        ("LISTs per reconcile", ours["lists_per_reconcile"], floor["lists_per_reconcile"], "", "0"),
        (
            f"idle CPU ({ours['idle_seconds']} s, net {ours['safety_net_interval_seconds']} s)",
            f"{ours['idle_cpu_percent']} %",
            f"{floor['idle_cpu_percent']} %",
            "",
            "< 2 %",
        ),
        (
            "idle requests per minute (+ Lease)",
            f"{ours['idle_requests_per_minute']} (+ {ours['idle_lease_requests_per_minute']})",
            floor["idle_requests_per_minute"],
            "",
            "0",
        ),
    ]
    lines = ["| figure | modelops | floor | ratio | target |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return f"{res['machine']}\n\n" + "\n".join(lines)


def child(url: str, store: str, port: int, interval: float, identity: str) -> None:
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

    settings = Settings(store_mount_path=store, reconcile_interval_seconds=interval)
    registry, _ = build(
        OperatorOptions(
            settings=settings,
            login=login,
            initial_streaming=True,
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
        settings.watching.initial_streaming = True
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


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="ModelDeployments (default 1000)")
    parser.add_argument("--rate", type=float, default=60.0, help="creates per second; 0: burst")
    parser.add_argument("--idle", type=float, default=120.0, help="idle window in seconds")
    parser.add_argument(
        "--interval",
        type=float,
        default=300.0,
        help="modelops' safety net (s); its first pass lands anywhere in it, so the idle "
        "window samples passes at the steady rate (the default: the chart's)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, url, store, port, interval, identity = args.child
        if kind == "floor":
            floor_child(url, int(port))
        else:
            child(url, store, int(port), float(interval), identity)
        return 0
    res = asyncio.run(bench(args))
    print(table(res))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    ok = all(res[k]["jobs_created"] == args.count for k in ("modelops", "floor"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
