"""Rollback benchmark: first failing request -> old revision owns traffic.

The whole operator runs against kmock; the canary's pod is backed by a REAL tritonserver whose
model fails every 4th request, the stable revision's pods by a healthy one. Load is sent to the
canary from the moment it is Ready; the clock starts at the first request that fails and stops
when revision 1 is back at all its replicas and revision 2 at 0 (both Deployments' spec, which
is what moves traffic: kmock has no kubelet, and revision 1's pods never went away because the
rollout only scales the old revision down once the canary is Ready).

    .venv/bin/python -m bench.bench_rollback               # interval 5 s, threshold 2, 3 runs
    .venv/bin/python -m bench.bench_rollback --interval 15 --runs 1

Compared with Flagger's default: its analysis interval is 60 s, so its time to roll back a
canary that fails every check is about 60 s x threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import running_operator, write_results
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import build_and_serve, finish_build
from tests.support.triton_load import FAIL_EVERY, Load, ip_router, tritons

ROOT = Path(__file__).resolve().parents[1]


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
    cluster: Cluster, store: Path, settings: Any, faulty: Any, name: str, args: Any
) -> float:
    """Serve r1, start a failing canary r2, load it; seconds from first failure to rollback."""
    await cluster.create_md(name, spec(name, args.interval, args.threshold))
    await build_and_serve(cluster, store, settings, name)
    r1, r2 = revision_name(name, 1), revision_name(name, 2)
    for i in range(REPLICAS):
        await cluster.add_pod(r1, f"10.1.0.{i + 1}", index=i)
    await cluster.update_spec(name, {"model": {"source": {"sha256": sha(name, 2)}}})
    await finish_build(cluster, store, settings, name)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, r2), what="canary Deployment")
    await cluster.ready_deployment(r2)
    await cluster.add_pod(r2, "10.9.0.1")
    with Load(faulty.grpc_url, max_seconds=args.threshold * args.interval + 60) as load:
        await eventually(
            lambda: replicas(cluster, r1) == REPLICAS and replicas(cluster, r2) == 0,
            args.threshold * args.interval + 60,
            "rollback",
        )
        done = time.monotonic()
    assert load.first_failure_at is not None
    return done - load.first_failure_at


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    with tritons(Path(tempfile.mkdtemp()), healthy=0, faulty=FAIL_EVERY) as servers:
        url = ip_router({"10.9.": servers["faulty"]}, servers["healthy"])
        async with running_operator(url) as (cluster, _op, settings, store):
            times = [
                await one_run(cluster, store, settings, servers["faulty"], f"rb{i}", args)
                for i in range(args.runs)
            ]
    target = args.threshold * args.interval + 5
    flagger = FLAGGER_INTERVAL_S * args.threshold
    median = statistics.median(times)
    return {
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
