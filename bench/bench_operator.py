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
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import kmock

from bench.job_controller import run_job_controller
from bench.operator_procs import (
    ROOT,
    ShortLogEmulator,
    child,
    floor_child,
    free_port,
    machine,
    proc_stat,
    scrape,
    start_child,
)
from modelops_operator.k8s import resources as r
from tests.support.kubernetes_emulator import declare_resources
from tests.support.server_shapes import shape_write

RESULTS = ROOT / "bench" / "results" / "operator.json"
TARGETS = {
    "p99_ms": 1000.0,
    "throughput_ratio": 0.8,
    "rss_settled_mib": 200.0,
    "idle_cpu_percent": 2.0,
}
SETTLED_SECONDS = 60.0


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
        # Objects as a real API server returns them, and the Job controller's pods.
        api.shape = shape_write
        controller = asyncio.create_task(run_job_controller(api))
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
            idle_start = time.perf_counter()
            # Settled: a minute after the last create (what a real cluster measured).
            await asyncio.sleep(
                max(0.0, min(args.idle, created + SETTLED_SECONDS - time.perf_counter()))
            )
            _, rss_settled, _ = proc_stat(child.pid)
            await asyncio.sleep(max(0.0, idle_start + args.idle - time.perf_counter()))
            cpu2, rss2, _ = proc_stat(child.pid)
            idle = api.verbs - idle0
            requests_idle = api.operator_requests - requests_idle0
        finally:
            controller.cancel()
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
        "rss_settled_mib": round(rss_settled, 1),
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
            for key in (
                "per_second",
                "p50_ms",
                "p99_ms",
                "rss_mib",
                "rss_settled_mib",
                "requests_per_md",
            )
        },
        "targets": TARGETS,
    }


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
        ("RSS after all created (MiB)", ours["rss_mib"], floor["rss_mib"], ratios["rss_mib"], ""),
        (
            "RSS settled, a minute after the last create (MiB)",
            ours["rss_settled_mib"],
            floor["rss_settled_mib"],
            ratios["rss_settled_mib"],
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
