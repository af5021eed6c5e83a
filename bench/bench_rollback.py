"""Rollback benchmark: first failing request -> old revision owns traffic.

The whole operator runs against kmock (the faithful emulator); the canary's pod is backed by a
REAL tritonserver whose model fails every 4th request, the stable revision's pods by a healthy
one. Traffic mode Replicas: the analyses read the canary pod's own Triton counters. The bench
plays the cluster's controllers (tests/support/operator_flow.py): it makes the revisions' pods,
reports their Deployments ready and ends the canary's validation Job with a pass, as the
validation pod would (a candidate gets no traffic before that). Load is sent to the canary from
then on; the clock starts at the first request that fails and stops when revision 1 is back at
all its replicas and revision 2 at 0 (both Deployments' spec, which is what moves traffic: kmock
has no kubelet, and revision 1's pods never went away). The status must then say RolledBack.

    .venv/bin/python -m bench.bench_rollback               # interval 5 s, threshold 2, 3 runs
    .venv/bin/python -m bench.bench_rollback --interval 15 --runs 1

Compared with Flagger's default: its analysis interval is 60 s, so its time to roll back a
canary that fails every check is about 60 s x threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import running_operator, write_results
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import build_and_serve, finish_build, phase, validate_revision
from tests.support.triton_load import FAIL_EVERY, Load, ip_router, tritons

ROOT = Path(__file__).resolve().parents[1]


FAULTY_PREFIX = "10.9."  # pods whose IP starts so are scraped on the faulty Triton
FLAGGER_INTERVAL_S = 60.0
REPLICAS = 2


def sha(name: str, version: int) -> str:
    """A model digest per run (each run builds its own engines: no store hit)."""
    return hashlib.sha256(f"{name}/{version}".encode()).hexdigest()


def spec(name: str, interval: int, threshold: int) -> dict[str, Any]:
    """Canary 50% -> 100% gated on a 1% error rate."""
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": sha(name, 1)}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": REPLICAS},
        "rollout": {
            # Judged on the canary pods' own Triton counters (bench_rollout_router: the router's).
            "traffic": {"mode": "Replicas"},
            "strategy": "Canary",
            "canary": {
                "steps": [50, 100],
                "analysisIntervalSeconds": interval,
                "failureThreshold": threshold,
                "maxErrorRate": 0.01,
            },
        },
    }


def replicas(cluster: Cluster, name: str) -> int:
    """spec.replicas of a Deployment (-1 when absent)."""
    dep = cluster.get(r.DEPLOYMENTS, name)
    return int(dep["spec"]["replicas"]) if dep else -1


async def one_run(
    cluster: Cluster, store: Path, settings: Any, faulty: Any, run: int, args: Any
) -> float:
    """Serve r1, start a failing canary r2, load it; seconds from first failure to rollback."""
    name = f"rb{run}"
    await cluster.create_md(name, spec(name, args.interval, args.threshold))
    r1, r2 = revision_name(name, 1), revision_name(name, 2)
    # build_and_serve makes r1's pod 0 and readies r1; its other replicas join as further pods.
    await build_and_serve(cluster, store, settings, name, ip=f"10.1.{run}.1")
    for i in range(1, REPLICAS):
        await cluster.add_pod(r1, f"10.1.{run}.{i + 1}", index=i)
    await cluster.update_spec(name, {"model": {"source": {"sha256": sha(name, 2)}}})
    await finish_build(cluster, store, settings, name)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, r2), what="canary Deployment")
    # The canary's pod (on the faulty Triton) becomes ready and its validation Job succeeds:
    # only then does its weight leave 0 and its analyses start.
    await validate_revision(cluster, name, 2, ip=f"{FAULTY_PREFIX}{run}.1")
    budget = args.threshold * args.interval + 60
    with Load(faulty.grpc_url, max_seconds=budget) as load:
        await eventually(
            lambda: replicas(cluster, r1) == REPLICAS and replicas(cluster, r2) == 0,
            budget,
            "rollback",
        )
        done = time.monotonic()
    # The Deployments move first, the status follows: it must say RolledBack (not timed).
    await eventually(lambda: phase(cluster, name) == "RolledBack", 10, "RolledBack")
    assert load.first_failure_at is not None
    return done - load.first_failure_at


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    load_before = os.getloadavg()
    with tritons(Path(tempfile.mkdtemp()), healthy=0, faulty=FAIL_EVERY) as servers:
        url = ip_router({FAULTY_PREFIX: servers["faulty"]}, servers["healthy"])
        async with running_operator(url) as (cluster, _op, settings, store):
            times = [
                await one_run(cluster, store, settings, servers["faulty"], i, args)
                for i in range(args.runs)
            ]
    target = args.threshold * args.interval + 5
    flagger = FLAGGER_INTERVAL_S * args.threshold
    median = statistics.median(times)
    return {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "load_average_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "analysisIntervalSeconds": args.interval,
        "failureThreshold": args.threshold,
        "runs_s": [round(t, 2) for t in times],
        "median_s": round(median, 2),
        "max_s": round(max(times), 2),
        "target_s": target,
        "flagger_equivalent_s": flagger,
        "speedup_vs_flagger": round(flagger / median, 1),
    }


def table(res: dict[str, Any]) -> str:
    """The figures as a markdown table."""
    return "\n".join(
        [
            "| measure | value |",
            "| --- | --- |",
            f"| analysisIntervalSeconds x failureThreshold | {res['analysisIntervalSeconds']} s"
            f" x {res['failureThreshold']} |",
            f"| first failing request -> r1 all replicas, r2 at 0 (runs) | "
            f"{', '.join(f'{t:.2f}' for t in res['runs_s'])} s |",
            f"| median / worst | {res['median_s']:.2f} s / {res['max_s']:.2f} s |",
            f"| target (threshold x interval + 5 s) | {res['target_s']} s |",
            f"| Flagger-equivalent time = 60 s x threshold | {res['flagger_equivalent_s']:.0f} s |",
            f"| Flagger-equivalent / measured median | {res['speedup_vs_flagger']}x |",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--threshold", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    figures = asyncio.run(main(parser.parse_args()))
    print(table(figures))
    print(f"\nwritten to {write_results('rollback', figures)}")
