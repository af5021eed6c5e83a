"""Rollouts judged by what clients see: the router's figures against replica weighting.

The whole operator runs against kmock; revisions' pods are real tritonservers behind Service
stand-ins; in Router mode the real router (HAProxy + agent fed by the operator's route feed)
carries the clients' requests, in Replicas mode one Service over every revision's pods does
(kube-proxy's per-connection balancing). Validation Jobs run the operator's own command against
the candidate's pods (tests/support/routed_cluster.py). Canary 50% -> 100%, analyses every
INTERVAL s, failureThreshold THRESHOLD. The clients: one keep-alive HTTP client, one gRPC channel
and one that opens a connection per request.

1. A canary whose every request Triton rejects in its front end (HTTP 400; Triton's counters stay
   at 0). Router: time from the first failed client request to RolledBack, and to the last failed
   one. Replicas (baseline): what happened within BASELINE_SECONDS.
2. A serving-only edit with no client traffic: time to Ready. Baseline: noTraffic Wait (the
   behaviour before this change: it waits for traffic that never comes).
3. An engine served wrongly (the engine's reference says y = x, the pod answers 3x): requests the
   clients sent to it, and failed client requests, before the validation run rolled it back.
4. An incompatible input signature (width 4 -> 3): failed client requests while it waits for the
   opt-in.

    .venv/bin/python -m bench.bench_rollout_router
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import kmock

from bench.harness import write_results
from modelops_builder.triton_local import TritonProcess, start_triton
from modelops_operator.handlers import Operator, OperatorOptions
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import validation_job_name
from modelops_operator.settings import Settings
from tests.support.apiserver import FaithfulEmulator
from tests.support.client_mix import ClientMix
from tests.support.kubernetes_emulator import (
    Cluster,
    declare_resources,
    emulator_login,
    eventually,
    operator_in_thread,
)
from tests.support.operator_flow import phase
from tests.support.routed_cluster import (
    INTERVAL,
    NAME,
    R1_IP,
    R2_IP,
    THRESHOLD,
    Stage,
    serving_stage,
)
from tests.support.triton_models import WIDTH, write_model

BASELINE_SECONDS = 30.0
STEPS = 2


@contextlib.asynccontextmanager
async def stage(
    servers: dict[str, TritonProcess], candidate: str, mode: str, no_traffic: str = "Promote"
) -> AsyncIterator[Stage]:
    """A fresh kmock, operator and stage: revision 1 serving on `good`."""
    work = Path(tempfile.mkdtemp(prefix="modelops-bench-rollout-"))
    store = work / "store"
    store.mkdir()
    async with FaithfulEmulator() as api, kmock.Server(api):
        declare_resources(api)
        login = emulator_login(str(api.url))

        def start_operator(**options: Any) -> contextlib.AbstractAsyncContextManager[Operator]:
            return operator_in_thread(OperatorOptions(login=login, **options))

        settings = Settings(
            store_mount_path=str(store), reconcile_interval_seconds=60.0, log_format="plain"
        )
        pods = {R1_IP: servers["good"], R2_IP: servers[candidate]}
        cluster = Cluster(api)
        async with serving_stage(
            cluster, store, settings, work, pods, start_operator, mode, no_traffic
        ) as running:
            yield running


def clients(running: Stage) -> ClientMix:
    """The three clients, started."""
    return ClientMix(*running.client_urls, NAME, short_lived=1).start()


async def new_engine(running: Stage, sha: str, width: int = WIDTH) -> None:
    """The spec names another model; its build finishes; revision 2's pod becomes ready."""
    await running.cluster.update_spec(NAME, {"model": {"source": {"sha256": sha}}})
    await running.build(sha, width)


async def rejected_canary(servers: dict[str, TritonProcess], mode: str) -> dict[str, Any]:
    """Scenario 1 in one traffic mode."""
    async with stage(servers, "rejecting", mode) as running:
        mix = clients(running)
        try:
            await new_engine(running, "b" * 64)
            await running.start_pod(2, R2_IP)
            job = validation_job_name(NAME, 2)
            await eventually(lambda: running.cluster.get(r.JOBS, job), 20, "validation Job")
            # The failure shows only with clients' requests: the run is reported passed.
            await running.cluster.finish_validation(job)
            deadline = time.monotonic() + BASELINE_SECONDS
            rolled_back_at = None
            while time.monotonic() < deadline:
                if phase(running.cluster, NAME) == "RolledBack":
                    rolled_back_at = time.monotonic()
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)
        finally:
            mix.stop()
        failed = mix.failures()
        first = min((o.at for o in failed), default=None)
        last = max((o.at for o in failed), default=None)
        status = running.status()
        return {
            "requests": len(mix.outcomes),
            "failed": len(failed),
            "failed_share": round(len(failed) / max(1, len(mix.outcomes)), 3),
            "rolled_back": rolled_back_at is not None,
            "first_failure_to_rolled_back_s": round(rolled_back_at - first, 2)
            if rolled_back_at and first
            else None,
            "first_to_last_failure_s": round(last - first, 2) if first and last else None,
            "phase_at_end": status.get("phase"),
            "current_at_end": status.get("revision", {}).get("current"),
        }


async def quiet_edit(servers: dict[str, TritonProcess], no_traffic: str) -> dict[str, Any]:
    """Scenario 2: a serving-only edit and no client at all."""
    async with stage(servers, "good", "Router", no_traffic) as running:
        edited = time.monotonic()
        delay = {"serving": {"dynamicBatching": {"maxQueueDelayMicroseconds": 500}}}
        await running.cluster.update_spec(NAME, delay)
        await running.start_pod(2, R2_IP)
        await running.validate(2)
        ready_at = None
        while time.monotonic() - edited < BASELINE_SECONDS:
            status = running.status()
            if status.get("revision", {}).get("current") == 2 and status.get("phase") == "Ready":
                ready_at = time.monotonic()
                break
            await asyncio.sleep(0.1)
        return {
            "ready_after_s": round(ready_at - edited, 2) if ready_at else None,
            "budget_s": STEPS * INTERVAL + 10,
            "phase_at_end": running.status().get("phase"),
        }


async def guarded(
    servers: dict[str, TritonProcess], candidate: str, run: Callable[[Stage], Awaitable[None]]
) -> dict[str, Any]:
    """Scenarios 3 and 4: clients all along; what reached the candidate."""
    async with stage(servers, candidate, "Router") as running:
        mix = clients(running)
        try:
            await run(running)
            await asyncio.sleep(2 * INTERVAL)
        finally:
            mix.stop()
        return {
            "requests": len(mix.outcomes),
            "failed": len(mix.failures()),
            "requests_to_candidate": await running.requests_to(2),
            "phase_at_end": running.status().get("phase"),
        }


async def wrong_engine(running: Stage) -> None:
    """The build is right, the pod serves other answers: validation must catch it."""
    await new_engine(running, "c" * 64)
    await running.start_pod(2, R2_IP)
    await running.validate(2)
    await eventually(lambda: phase(running.cluster, NAME) == "RolledBack", 20, "RolledBack")


async def incompatible(running: Stage) -> None:
    """Input width 4 -> 3: held back until acceptSignature."""
    await new_engine(running, "d" * 64, WIDTH - 1)
    await asyncio.sleep(2 * INTERVAL)


async def run() -> dict[str, Any]:
    """Every scenario, in one process."""
    root = Path(tempfile.mkdtemp(prefix="modelops-bench-tritons-"))
    write_model(root / "good", NAME, scale=1.0)
    write_model(root / "rejecting", NAME, width=WIDTH - 1, scale=1.0)
    write_model(root / "wrong", NAME, scale=3.0)
    servers = {name: start_triton(root / name) for name in ("good", "rejecting", "wrong")}
    try:
        return {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "interval_s": INTERVAL,
            "threshold": THRESHOLD,
            "rejected_canary": {
                "router": await rejected_canary(servers, "Router"),
                "replicas_baseline": await rejected_canary(servers, "Replicas"),
            },
            "no_traffic_edit": {
                "promote": await quiet_edit(servers, "Promote"),
                "wait_baseline": await quiet_edit(servers, "Wait"),
            },
            "wrong_engine": await guarded(servers, "wrong", wrong_engine),
            "incompatible_signature": await guarded(servers, "rejecting", incompatible),
        }
    finally:
        for server in servers.values():
            server.stop()


def main() -> None:
    """Run, print, save bench/results/rollout_router.json."""
    payload = asyncio.run(run())
    path = write_results("rollout_router", payload)
    rejected = payload["rejected_canary"]
    print(f"400 canary, router:   {rejected['router']}")
    print(f"400 canary, replicas: {rejected['replicas_baseline']}")
    print(f"no-traffic edit:      {payload['no_traffic_edit']}")
    print(f"wrong engine:         {payload['wrong_engine']}")
    print(f"incompatible:         {payload['incompatible_signature']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
