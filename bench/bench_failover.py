"""Failover benchmark: two operator replicas on one Lease (default timings), the holder killed.

Both replicas run as subprocesses against one FaithfulEmulator (bench_operator's, log kept
short). Each round SIGKILLs the Lease holder, creates a ModelDeployment at once and measures
the time from the kill until the standby holds the Lease and until that ModelDeployment's
build Job exists; the killed replica comes back as the next standby. No Job may be created
twice.

    .venv/bin/python -m bench.bench_failover            # 3 rounds, 100 ModelDeployments first
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kmock

from bench.bench_operator import create_all, spec
from bench.operator_procs import ROOT, ShortLogEmulator, free_port, machine, scrape, start_child
from modelops_operator.k8s import resources as r
from tests.support.kubernetes_emulator import declare_resources

RESULTS = ROOT / "bench" / "results" / "failover.json"
TARGET_SECONDS = 15.0
Replica = tuple[subprocess.Popen[bytes], Any, int]


def holder(api: ShortLogEmulator) -> str | None:
    """The Lease's holderIdentity (None while there is no Lease)."""
    for (resource, _, name), obj in api.objects.items():
        if resource.plural == "leases" and name == "modelops-operator" and not obj.deleted:
            return str((obj.last.raw.get("spec") or {}).get("holderIdentity") or "")
    return None


async def wait_for(probe: Any, within: float) -> float | None:
    """Seconds until probe() is true, or None."""
    start = time.perf_counter()
    while time.perf_counter() - start < within:
        if probe():
            return time.perf_counter() - start
        await asyncio.sleep(0.02)
    return None


async def start(name: str, url: str, store: Path) -> Replica:
    """A modelops replica with its identity; returns once its /metrics answers."""
    port = free_port()
    proc, log = start_child("modelops", url, store, port, 300.0, identity=name)
    for _ in range(600):
        try:
            await scrape(port)
            return proc, log, port
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"replica {name} did not start")


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    """Rounds of kill -> takeover -> first Job."""
    store = Path(tempfile.mkdtemp(prefix="modelops-bench-store-"))
    rounds: list[dict[str, float | None]] = []
    async with ShortLogEmulator() as api, kmock.Server(api):
        declare_resources(api)
        api.start_recording()
        url = str(api.url).rstrip("/")
        replicas = {n: await start(n, url, store) for n in ("op-0", "op-1")}
        try:
            await wait_for(lambda: holder(api) in replicas, 30)
            await create_all(api, args.count, 0)
            await wait_for(lambda: len(api.job_times) >= args.count, 120)
            for i in range(args.rounds):
                leader = holder(api)
                assert leader in replicas, leader
                proc, log, _ = replicas.pop(leader)
                proc.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                await asyncio.to_thread(proc.wait)
                log.close()
                name = f"after-kill-{i}"
                await api.post(r.MODELDEPLOYMENTS.path("bench"), json=new_md(name, 10_000 + i))
                (other,) = replicas
                took_lease = await wait_for(lambda o=other: holder(api) == o, 60)
                first_job = await wait_for(lambda n=name: n in api.job_times, 60)
                rounds.append(
                    {
                        "lease_seconds": None if took_lease is None else round(took_lease, 2),
                        "job_seconds": None
                        if first_job is None
                        else round(api.job_times[name] - killed, 2),
                    }
                )
                print(f"  round {i}: {rounds[-1]}", file=sys.stderr)
                replicas[f"op-{i + 2}"] = await start(f"op-{i + 2}", url, store)
                await asyncio.sleep(3)
        finally:
            for proc, log, _ in replicas.values():
                proc.send_signal(signal.SIGTERM)
                # Waited for off the loop: the replica releases the Lease through this server.
                await asyncio.to_thread(proc.wait, 30)
                log.close()
    jobs = [s for s in rounds if s["job_seconds"] is not None]
    return {
        "machine": machine(),
        "lease": "duration 8 s, renew deadline 5 s, retry 2 s (the chart's defaults)",
        "model_deployments": args.count + args.rounds,
        "rounds": rounds,
        "job_after_kill_median_seconds": statistics.median(s["job_seconds"] for s in jobs)  # type: ignore[type-var]
        if jobs
        else None,
        "job_after_kill_max_seconds": max(s["job_seconds"] for s in jobs) if jobs else None,  # type: ignore[type-var]
        "jobs_created_twice": sorted(n for n, c in api.job_posts.items() if c > 1),
        "target_seconds": TARGET_SECONDS,
    }


def new_md(name: str, i: int) -> dict[str, Any]:
    """A ModelDeployment body as create_all sends them."""
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "bench", "uid": f"uid-{name}", "generation": 1},
        "spec": spec(i),
    }


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="ModelDeployments first")
    parser.add_argument("--rounds", type=int, default=3, help="kills")
    args = parser.parse_args()
    res = asyncio.run(bench(args))
    print(json.dumps(res, indent=2))
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    ok = not res["jobs_created_twice"] and len(res["rounds"]) == args.rounds
    worst = res["job_after_kill_max_seconds"]
    return 0 if ok and worst is not None and worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
