"""Drain benchmark: serving pods removed 20 times under steady load, with and without the drain.

The serving path is the default one: the real router (HAProxy from the operator's haproxy.cfg,
driven by the real router agent) in front of one Service stand-in per revision (HAProxy in tcp
mode, balancing connections the way kube-proxy does) over real tritonserver "pods". The load is
4 clients that open a new HTTP connection per request, one keep-alive HTTP client and one gRPC
channel, all through the router.

Each removal is a pod deletion as Kubernetes runs it (tests/support/pod_lifecycle.py): the
endpoints drop PROPAGATION_SECONDS later, while the kubelet runs the pod's rendered preStop hook,
then SIGTERM, then SIGKILL at the rendered grace period. The 20 removals:

- 8 scale-downs of revision 1 (each after a replacement pod joined, as an autoscaler cycle or a
  node drain does);
- a promotion: revision 2 takes 10%, then 100%, and revision 1's 2 pods go;
- 8 scale-downs of revision 2;
- a rollback: revision 3 takes 10%, goes back to 0%, and its 2 pods go.

The baseline is the same run with `drainSeconds: 0` (no preStop hook: the behaviour before the
drain). All pods are started before the load begins, so no tritonserver start competes with the
clients for the CPU while latencies are measured.

    .venv/bin/python -m bench.bench_drain
    .venv/bin/python -m bench.bench_drain --drain 5 --propagation 1.0
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import write_results
from modelops_builder.triton_local import TritonProcess, start_triton
from tests.support.client_mix import ClientMix, Outcome
from tests.support.pod_lifecycle import terminate_pod, triton_pod_spec
from tests.support.router_harness import Router, ServiceProxy, router, settle
from tests.support.triton_models import write_model

MODEL = "m"
STEADY_SECONDS = 10.0
SCALE_DOWNS = 8  # per revision, twice
REVISION_PODS = 2


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Pods:
    """Started tritonserver processes, handed out in order."""

    def __init__(self, repo: Path, count: int) -> None:
        with ThreadPoolExecutor(2) as pool:
            self.spare = list(pool.map(lambda _: start_triton(repo), range(count)))
        self.all = list(self.spare)
        self.count = 0

    def take(self) -> tuple[str, TritonProcess]:
        """The next pod and its name."""
        self.count += 1
        return f"pod{self.count}", self.spare.pop(0)

    def __iter__(self) -> Iterator[TritonProcess]:
        return iter(self.all)

    def stop(self) -> None:
        """Stop whatever still runs."""
        for server in self.all:
            server.stop(10.0)


class Scenario:
    """The removals of one run, against one router and its Services."""

    def __init__(self, pods: Pods, workdir: Path, drain: int, propagation: float) -> None:
        self.pods, self.workdir = pods, workdir
        self.spec = triton_pod_spec(drain)
        self.propagation = propagation
        self.services: dict[str, ServiceProxy] = {}
        self.members: dict[str, dict[str, TritonProcess]] = {}
        self.removals = 0
        self.killed = 0

    def add_revision(self, service: str) -> None:
        """A revision Service with REVISION_PODS ready pods."""
        members = dict(self.pods.take() for _ in range(REVISION_PODS))
        self.members[service] = members
        self.services[service] = ServiceProxy(service, members, self.workdir).start()

    async def remove(self, service: str, pod: str) -> None:
        """Delete one pod of `service` the way Kubernetes does."""
        process = self.members[service].pop(pod).process
        proxy = self.services[service]
        termination = await asyncio.to_thread(
            terminate_pod,
            self.spec,
            "triton",
            process,
            lambda: proxy.remove_endpoint(pod),
            self.propagation,
        )
        self.removals += 1
        self.killed += termination.killed

    async def scale_down(self, service: str) -> None:
        """A replacement joins, then the oldest pod goes."""
        name, server = self.pods.take()
        self.members[service][name] = server
        self.services[service].add_endpoint(name, server)
        await asyncio.sleep(0.3)
        await self.remove(service, next(iter(self.members[service])))

    async def retire(self, service: str) -> None:
        """Every pod of a revision goes at once (its Deployment scaled to 0)."""
        await asyncio.gather(*(self.remove(service, pod) for pod in list(self.members[service])))

    def stop(self) -> None:
        """Stop the Service stand-ins."""
        for proxy in self.services.values():
            proxy.stop()


async def _removals(scenario: Scenario, running: Router) -> None:
    for _ in range(SCALE_DOWNS):
        await scenario.scale_down("m-r1")
    scenario.add_revision("m-r2")
    running.services.update(scenario.services)
    await running.route({"m-r1": 90, "m-r2": 10})
    await asyncio.sleep(1.0)
    await running.route({"m-r1": 0, "m-r2": 100})  # the router no longer sends to revision 1
    await scenario.retire("m-r1")
    for _ in range(SCALE_DOWNS):
        await scenario.scale_down("m-r2")
    scenario.add_revision("m-r3")
    running.services.update(scenario.services)
    await running.route({"m-r2": 90, "m-r3": 10})
    await asyncio.sleep(1.0)
    await running.route({"m-r2": 100, "m-r3": 0})
    await scenario.retire("m-r3")


def _figures(outcomes: list[Outcome], steady_end: float, end: float) -> dict[str, Any]:
    steady = [o.seconds for o in outcomes if o.at < steady_end and o.error is None]
    during = [o.seconds for o in outcomes if steady_end <= o.at < end and o.error is None]
    failed = [o for o in outcomes if o.error is not None]
    by_client: dict[str, int] = {}
    for outcome in failed:
        by_client[outcome.client] = by_client.get(outcome.client, 0) + 1
    steady_p99, during_p99 = _percentile(steady, 0.99), _percentile(during, 0.99)
    return {
        "requests": len(outcomes),
        "failed": len(failed),
        "failed_by_client": by_client,
        "first_errors": sorted({o.error or "" for o in failed})[:3],
        "steady_p50_ms": round(statistics.median(steady) * 1000, 2),
        "steady_p99_ms": round(steady_p99 * 1000, 2),
        "removals_p50_ms": round(statistics.median(during) * 1000, 2),
        "removals_p99_ms": round(during_p99 * 1000, 2),
        "p99_ratio": round(during_p99 / steady_p99, 3),
    }


async def run_once(drain: int, propagation: float) -> dict[str, Any]:
    """One run: steady load, then the 20 removals; figures of what the clients saw."""
    workdir = Path(tempfile.mkdtemp(prefix="modelops-bench-drain-"))
    write_model(workdir / "repo", MODEL)
    pods = Pods(workdir / "repo", 3 * REVISION_PODS + 2 * SCALE_DOWNS)
    scenario = Scenario(pods, workdir, drain, propagation)
    try:
        scenario.add_revision("m-r1")
        async with router(dict(scenario.services)) as running:
            await running.route({"m-r1": 100})
            await settle()
            clients = ClientMix(running.http_url, running.grpc_url, MODEL, short_lived=4).start()
            await asyncio.sleep(STEADY_SECONDS)
            steady_end = time.monotonic()
            await _removals(scenario, running)
            await asyncio.sleep(1.0)
            end = time.monotonic()
            clients.stop()
    finally:
        scenario.stop()
        pods.stop()
    figures = _figures(clients.outcomes, steady_end, end)
    figures.update(
        removals=scenario.removals, killed=scenario.killed, seconds=round(end - steady_end, 1)
    )
    return figures


def main() -> None:
    """Run the baseline and the drain in one process; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drain", type=int, default=2, help="drainSeconds of the drained run")
    parser.add_argument("--propagation", type=float, default=0.5, help="endpoint lag, seconds")
    args = parser.parse_args()
    baseline = asyncio.run(run_once(0, args.propagation))
    drained = asyncio.run(run_once(args.drain, args.propagation))
    payload = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "drain_seconds": args.drain,
        "propagation_seconds": args.propagation,
        "baseline_no_drain": baseline,
        "drain": drained,
    }
    path = write_results("drain", payload)
    for label, figures in (("no drain (baseline)", baseline), ("drain", drained)):
        print(
            f"{label:>20}: {figures['removals']} removals, {figures['requests']} requests, "
            f"{figures['failed']} failed; p99 steady {figures['steady_p99_ms']} ms, "
            f"during removals {figures['removals_p99_ms']} ms ({figures['p99_ratio']}x)"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
