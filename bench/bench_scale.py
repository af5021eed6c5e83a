"""Scaling benchmark: load step -> new replica count decided and applied.

The whole operator runs against kmock with a 2 s metrics interval; the serving pod is backed by
a REAL healthy tritonserver. Once the operator has an idle baseline (status.metrics is set),
the benchmark starts a gRPC load far above target (inferencesPerSecond, 20/s per replica); the
clock runs from the first request of the step until the revision's Deployment has more
replicas, i.e. the decision is made AND applied. Then it checks that steady load does not
oscillate: the count only ever grows while the load holds.

    .venv/bin/python -m bench.bench_scale                 # interval 2 s, 3 runs
    .venv/bin/python -m bench.bench_scale --interval 5 --runs 1

Baseline: the HPA re-evaluates every 15 s (--horizontal-pod-autoscaler-sync-period) on figures
from metrics-server, which scrapes every 15 s (--metric-resolution) and needs one more scrape
for a rate, so a load step reaches the HPA's input after 15-30 s; we compare with the lower
bound of that pipeline plus one sync period: 15 + 15 = 30 s (worst case 15 + 30 = 45 s).
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
from tests.support.operator_flow import build_and_serve
from tests.support.triton_load import Load, ip_router, tritons

ROOT = Path(__file__).resolve().parents[1]


HPA_BASELINE_S, HPA_WORST_S = 30.0, 45.0
TARGET = 20.0
HOLD_S = 6.0


def sha(name: str, version: int) -> str:
    """A model digest per run (each run builds its own engine: no store hit)."""
    return hashlib.sha256(f"{name}/{version}".encode()).hexdigest()


def spec(name: str) -> dict[str, Any]:
    """One to four replicas on inferencesPerSecond."""
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": sha(name, 1)}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 1},
        "scaling": {
            "minReplicas": 1,
            "maxReplicas": 4,
            "metric": "inferencesPerSecond",
            "target": TARGET,
            "scaleDownDelaySeconds": 300,
        },
        "rollout": {"strategy": "Recreate"},
    }


async def one_run(
    cluster: Cluster, store: Path, settings: Any, healthy: Any, name: str, interval: float
) -> tuple[float, list[int]]:
    """Seconds from the load step to the scaled Deployment, and the counts seen under load."""
    await cluster.create_md(name, spec(name))
    await build_and_serve(cluster, store, settings, name, ip="10.3.0.1")
    rev = revision_name(name, 1)
    await eventually(lambda: cluster.md(name)["status"].get("metrics"), 4 * interval, "baseline")

    def replicas() -> int:
        dep = cluster.get(r.DEPLOYMENTS, rev)
        assert dep is not None
        return int(dep["spec"]["replicas"])

    seen: list[int] = []
    with Load(healthy.grpc_url, max_seconds=60) as load:
        await eventually(lambda: replicas() > 1, 10 * interval, "a scale-up")
        decided = time.monotonic()
        end = decided + HOLD_S
        while time.monotonic() < end:
            if not seen or seen[-1] != replicas():
                seen.append(replicas())
            await asyncio.sleep(0.1)
    assert load.first_at is not None
    return decided - load.first_at, seen


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    with tritons(Path(tempfile.mkdtemp()), healthy=0) as servers:
        url = ip_router({}, servers["healthy"])
        async with running_operator(url, metrics_interval_seconds=args.interval) as (
            cluster,
            _op,
            settings,
            store,
        ):
            runs = [
                await one_run(cluster, store, settings, servers["healthy"], f"sc{i}", args.interval)
                for i in range(args.runs)
            ]
    times = [t for t, _ in runs]
    monotonic = all(seen == sorted(seen) for _, seen in runs)
    median = statistics.median(times)
    return {
        "metricsIntervalSeconds": args.interval,
        "runs_s": [round(t, 2) for t in times],
        "median_s": round(median, 2),
        "max_s": round(max(times), 2),
        "target_s": 2 * args.interval,
        "counts_under_load": [seen for _, seen in runs],
        "no_oscillation": monotonic,
        "hpa_baseline_s": HPA_BASELINE_S,
        "hpa_worst_s": HPA_WORST_S,
        "speedup_vs_hpa": round(HPA_BASELINE_S / median, 1),
    }


def table(res: dict[str, Any]) -> str:
    """The figures as a markdown table."""
    return "\n".join(
        [
            "| measure | value |",
            "| --- | --- |",
            f"| metrics interval | {res['metricsIntervalSeconds']} s |",
            f"| load step -> Deployment scaled (runs) | "
            f"{', '.join(f'{t:.2f}' for t in res['runs_s'])} s |",
            f"| median / worst | {res['median_s']:.2f} s / {res['max_s']:.2f} s |",
            f"| target (2 intervals) | {res['target_s']} s |",
            f"| replica counts while the load held | {res['counts_under_load']} |",
            f"| HPA baseline (15 s sync + 15 s metrics-server) | {res['hpa_baseline_s']:.0f} s"
            f" (worst {res['hpa_worst_s']:.0f} s) |",
            f"| HPA baseline / measured median | {res['speedup_vs_hpa']}x |",
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    figures = asyncio.run(main(parser.parse_args()))
    print(table(figures))
    print(f"\nwritten to {write_results('scale', figures)}")
