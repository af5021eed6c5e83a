"""Scale to zero: 20 idle -> wake cycles with no failed request, the cold start broken down, and
a baseline without holding in the same run.

The whole operator runs against kmock; the real router (HAProxy from the operator's config with
its hold action, the agent fed by the operator's route feed) carries the clients' requests; a
stand-in kubelet starts a real tritonserver for each pod (tests/support/zero_stage.py), so the
cold start contains Triton's own start and model load.

Each cycle waits until the model is asleep (phase Idle, 0 pods), then three clients send their
first request at a random moment: a keep-alive HTTP client (its connection stays open across
cycles), short-lived HTTP clients (a connection per request) and a gRPC channel; whichever
comes first is held and wakes the model. The cold start (first held request -> its response)
is split into: demand seen (the operator took the router's report), replicas set (the
Deployment asks for a pod), pod Ready (tritonserver started and loaded the model, the pod
reported Ready), router table (HAProxy's slot for the revision is usable), response.

Baseline (same run): the same pod started by hand (`kubectl scale --replicas=1`) at the first
request, no holding: clients retrying every 100 ms against the revision's Service until the pod
is Ready, as a user of plain Deployments gets.

Idle cost: Triton pods while asleep, the operator's requests to the API server and its reads of
pods per minute while asleep, HAProxy's and the agent's RSS.

    .venv/bin/python -m bench.bench_scale_to_zero
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from bench.harness import write_results
from modelops_builder.triton_local import start_triton
from modelops_operator.api.routes import DemandEvent
from modelops_operator.handlers import Operator, OperatorOptions
from modelops_operator.router.admin import HAProxyAdmin
from modelops_operator.settings import Settings
from tests.support.apiserver import FaithfulEmulator
from tests.support.engine_store import TEST_MAC_KEY, TEST_TRANSFER_KEY
from tests.support.kubernetes_emulator import (
    TEST_AGENT,
    Cluster,
    declare_resources,
    emulator_login,
    eventually,
    operator_in_thread,
)
from tests.support.routed_cluster import NAME, ROUTER_IP
from tests.support.router_harness import ServiceProxy
from tests.support.triton_models import INPUT_NAME, WIDTH, write_model
from tests.support.zero_stage import POD_IP, ZeroStage, zero_stage

CYCLES = int(os.environ.get("MODELOPS_BENCH_CYCLES", "20"))
BASELINE_CYCLES = int(os.environ.get("MODELOPS_BENCH_BASELINE_CYCLES", "5"))
IDLE_SECONDS = 2
REQUESTS_PER_CLIENT = 3
RETRY_SECONDS = 0.1
QUIET_SECONDS = float(os.environ.get("MODELOPS_BENCH_QUIET_SECONDS", "30"))
KINDS = ("http-keepalive", "http-short", "grpc")


class TrimmedLog(FaithfulEmulator):
    """kmock keeps every request and matches each new one against all of them (cost grows with
    the run, as no API server's does): the log is kept to the request being served, and the
    operator's requests are counted by method and path instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: Counter[str] = Counter()

    async def _handle(self, request: kmock.Request) -> Any:
        del self._requests[:-1]
        for payload in self._payloads:
            del payload._requests[:-1]
        if not str(request.headers.get("User-Agent", "")).startswith(TEST_AGENT):
            self.seen[f"{str(request.method).upper().split('.')[-1]} {request.url.path}"] += 1
        return await super()._handle(request)


@dataclass
class Outcome:
    kind: str
    sent: float
    answered: float
    ok: bool
    error: str = ""


class Clients:
    """The three kinds of clients, each on a thread of its own for the whole run (tritonclient's
    HTTP client is bound to the thread that made it); the keep-alive HTTP client and the gRPC
    channel persist across cycles."""

    def __init__(self, http_url: str, grpc_url: str) -> None:
        self.http_url, self.grpc_url = http_url, grpc_url
        self.pools = {kind: ThreadPoolExecutor(max_workers=1) for kind in KINDS}
        self._local = threading.local()

    def _client(self, kind: str) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            if kind == "grpc":
                client = grpcclient.InferenceServerClient(self.grpc_url)
            elif kind == "http-keepalive":
                client = httpclient.InferenceServerClient(self.http_url, network_timeout=180)
            self._local.client = client
        return client

    def one(self, kind: str) -> Outcome:
        """One request of a client kind (on the caller's thread), its answer checked (y = x)."""
        x = np.ones((1, WIDTH), np.float32)
        sent = time.monotonic()
        try:
            if kind == "grpc":
                g = grpcclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
                g.set_data_from_numpy(x)
                y = self._client(kind).infer(NAME, [g], client_timeout=180).as_numpy("y")
            else:
                short = kind == "http-short"
                client = (
                    httpclient.InferenceServerClient(self.http_url, network_timeout=180)
                    if short
                    else self._client(kind)
                )
                h = httpclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
                h.set_data_from_numpy(x, binary_data=True)
                try:
                    y = client.infer(NAME, [h]).as_numpy("y")
                finally:
                    if short:
                        client.close()
            ok = y is not None and float(y[0][0]) == 1.0
            return Outcome(kind, sent, time.monotonic(), ok, "" if ok else f"wrong answer {y}")
        except Exception as exc:
            return Outcome(kind, sent, time.monotonic(), False, str(exc)[:300])

    def burst(self, kind: str, delay: float) -> Future[list[Outcome]]:
        """After `delay` seconds, REQUESTS_PER_CLIENT requests in a row on the kind's thread."""

        def run() -> list[Outcome]:
            time.sleep(delay)
            return [self.one(kind) for _ in range(REQUESTS_PER_CLIENT)]

        return self.pools[kind].submit(run)

    def close(self) -> None:
        for kind, pool in self.pools.items():
            if kind != "http-short":
                pool.submit(
                    lambda: getattr(self._local, "client", None) and self._local.client.close()
                )
            pool.shutdown(wait=True)


async def asleep(stage: ZeroStage) -> None:
    """Phase Idle, READY 0/0, no pod."""
    await eventually(lambda: stage.phase() == "Idle", IDLE_SECONDS + 30, "phase Idle")
    await eventually(lambda: stage.kubelet.server is None, 30, "the pod stopped")
    await eventually(lambda: stage.status().get("ready") == "0/0", 30, "READY 0/0")


async def slot_usable_at(admin: HAProxyAdmin, since: float, stop: asyncio.Event) -> float | None:
    """When HAProxy's HTTP slot for the revision got a weight (the router table applied)."""
    while not stop.is_set():
        slots = await admin.slots("http")
        if any(s.weight > 0 and not s.maintenance for s in slots):
            return time.monotonic()
        await asyncio.sleep(0.01)
    return None


def note_demand(op: Operator, seen: list[float]) -> None:
    """Stamp each held-request report the operator takes (wraps its demand feed's hand-off)."""
    feed = op.demand
    original = feed._note

    async def stamped(key: Any, report: Any) -> None:
        if report.event == DemandEvent.HELD:
            seen.append(time.monotonic())
        await original(key, report)

    feed._note = stamped


async def quiet_cost(stage: ZeroStage, api: TrimmedLog, seconds: float) -> dict[str, Any]:
    """What the operator does in `seconds` without a request: API requests, pod reads."""
    before, start = Counter(api.seen), time.monotonic()
    pods_running = stage.kubelet.server is not None
    await asyncio.sleep(seconds)
    end = time.monotonic()
    minutes = (end - start) / 60
    seen = api.seen - before

    def reads(ip: str) -> float:
        return round(
            sum(1 for at, i in stage.scrapes if start <= at <= end and i == ip) / minutes, 1
        )

    return {
        "seconds": round(end - start, 1),
        "triton_pods": int(pods_running),
        "triton_pod_reads_per_min": reads(POD_IP),
        "router_reads_per_min": reads(ROUTER_IP),
        "api_requests_per_min": round(sum(seen.values()) / minutes, 1),
        "api_requests": dict(seen.most_common(5)),
    }


async def idle_cost(stage: ZeroStage, api: TrimmedLog, clients: Clients) -> dict[str, Any]:
    """Asleep against awake with no traffic (what a Ready model costs today), QUIET_SECONDS each."""
    await asleep(stage)
    await asyncio.sleep(3.0)  # the last status patch of the sleep lands
    asleep_cost = await quiet_cost(stage, api, QUIET_SECONDS)
    await stage.cluster.update_spec(NAME, {"scaling": {"idleSeconds": 3600}})
    assert all(o.ok for o in await asyncio.wrap_future(clients.burst("grpc", 0.0)))
    await eventually(lambda: stage.phase() == "Ready", 30, "phase Ready")
    await asyncio.sleep(5.0)
    return {
        "asleep": asleep_cost,
        "awake_no_traffic": await quiet_cost(stage, api, QUIET_SECONDS),
    }


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def agent_rss_mib() -> float | None:
    """A `modelops router-agent` process on its own (idle, no HAProxy to reach): its RSS."""
    work = Path(tempfile.mkdtemp(prefix="modelops-agent-"))
    modelops = Path(sys.executable).parent / "modelops"
    proc = subprocess.Popen(
        [str(modelops), "router-agent", "--socket", str(work / "none.sock"), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(4.0)
        return rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "max": None}
    return {"p50": round(statistics.median(values), 2), "max": round(max(values), 2)}


async def cycles(stage: ZeroStage, api: TrimmedLog) -> dict[str, Any]:
    """CYCLES idle -> wake cycles with the three clients."""
    router = stage.router.router
    clients = Clients(router.http_url, router.grpc_url)
    assert router.config is not None
    admin = HAProxyAdmin(router.config.admin_socket)
    demand: list[float] = []
    note_demand(stage.operator, demand)
    rng = random.Random(24)
    rows: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    try:
        for cycle in range(CYCLES):
            await asleep(stage)
            first_kind = KINDS[cycle % len(KINDS)]
            first_delay = rng.uniform(0.0, 1.5)
            delays = {
                k: first_delay + (0.0 if k == first_kind else rng.uniform(0.05, 1.0)) for k in KINDS
            }
            assert stage.kubelet.server is None, "a Triton pod runs while asleep"
            futures = [clients.burst(k, delays[k]) for k in KINDS]
            stop = asyncio.Event()
            await asyncio.sleep(max(0.0, first_delay - 0.02))
            table = asyncio.create_task(slot_usable_at(admin, time.monotonic(), stop))
            got = [o for f in futures for o in await asyncio.wrap_future(f)]
            stop.set()
            table_at = await table
            outcomes += got
            first = min(got, key=lambda o: o.sent)
            marks = stage.kubelet.marks
            seen = next((t for t in demand if t >= first.sent - 0.05), None)

            def rel(moment: float | None, start: float = first.sent) -> float | None:
                return None if moment is None else round(moment - start, 3)

            rows.append(
                {
                    "cycle": cycle,
                    "first_client": first.kind,
                    "cold_start_s": rel(first.answered),
                    "demand_seen_s": rel(seen),
                    "replicas_set_s": rel(marks.get("replicas_set")),
                    "pod_ready_s": rel(marks.get("pod_ready")),
                    "router_table_s": rel(table_at),
                    "triton_start_and_load_s": rel(
                        marks.get("triton_ready"), marks.get("replicas_set", 0.0)
                    ),
                    "failed": sum(1 for o in got if not o.ok),
                }
            )
            print(rows[-1], flush=True)
            demand.clear()
        idle = await idle_cost(stage, api, clients)
    finally:
        clients.close()
    failures = [o for o in outcomes if not o.ok]
    colds = [row["cold_start_s"] for row in rows]
    tritons = [row["triton_start_and_load_s"] for row in rows if row["triton_start_and_load_s"]]
    steps = ("demand_seen_s", "replicas_set_s", "pod_ready_s", "router_table_s", "cold_start_s")
    return {
        "cycles": len(rows),
        "requests": len(outcomes),
        "failed_requests": len(failures),
        "failures": [f"{o.kind}: {o.error}" for o in failures[:5]],
        "by_client": {k: sum(1 for o in outcomes if o.kind == k) for k in KINDS},
        "cold_start_s": summary(colds),
        "triton_start_and_load_s": summary(tritons),
        "breakdown_p50_s": {
            step: summary([row[step] for row in rows if row[step] is not None])["p50"]
            for step in steps
        },
        "target_p50_s": round(statistics.median(tritons) + 2.0, 2) if tritons else None,
        "idle": idle,
        "haproxy_rss_mib": rss_mib(stage.router.router.process.pid)
        if stage.router.router.process
        else None,
        "rows": rows,
    }


async def baseline(model_root: Path, work: Path) -> dict[str, Any]:
    """No holding: the pod started by hand at the first request; clients retry against the
    revision's Service (a kube-proxy stand-in) until the pod is Ready."""
    proxy = ServiceProxy("m-r1-baseline", {}, work).start()
    rows: list[dict[str, Any]] = []
    try:
        for cycle in range(BASELINE_CYCLES):
            clients = Clients(
                f"127.0.0.1:{proxy.ports['http']}", f"127.0.0.1:{proxy.ports['grpc']}"
            )
            started = time.monotonic()
            done = threading.Event()
            got: list[Outcome] = []

            def retrying(
                kind: str,
                clients: Clients = clients,
                got: list[Outcome] = got,
                done: threading.Event = done,
            ) -> None:
                while not done.is_set():
                    outcome = clients.one(kind)
                    got.append(outcome)
                    if outcome.ok:
                        return
                    time.sleep(RETRY_SECONDS)

            threads = [threading.Thread(target=retrying, args=(k,)) for k in ("http-short", "grpc")]
            for thread in threads:
                thread.start()
            server = await asyncio.to_thread(start_triton, model_root)  # kubectl scale 0 -> 1
            proxy.add_endpoint(f"pod{cycle}", server)
            ready = time.monotonic()
            for thread in threads:
                await asyncio.to_thread(thread.join, 60)
            done.set()
            served = min((o.answered for o in got if o.ok), default=None)
            rows.append(
                {
                    "cycle": cycle,
                    "failed": sum(1 for o in got if not o.ok),
                    "pod_ready_s": round(ready - started, 3),
                    "first_success_s": round(served - started, 3) if served else None,
                }
            )
            print("baseline", rows[-1], flush=True)
            clients.close()
            proxy.remove_endpoint(f"pod{cycle}")
            await asyncio.to_thread(server.stop, 10.0)
    finally:
        proxy.stop()
    return {
        "cycles": len(rows),
        "failed_requests": sum(row["failed"] for row in rows),
        "first_success_s": summary(
            [row["first_success_s"] for row in rows if row["first_success_s"]]
        ),
        "rows": rows,
    }


@contextlib.asynccontextmanager
async def bench_stage(work: Path, model_root: Path) -> AsyncIterator[tuple[ZeroStage, TrimmedLog]]:
    """kmock, the operator and the zero stage."""
    store = work / "store"
    store.mkdir()
    async with TrimmedLog() as api, kmock.Server(api):
        declare_resources(api)
        login = emulator_login(str(api.url))

        def start_operator(**options: Any) -> contextlib.AbstractAsyncContextManager[Operator]:
            return operator_in_thread(OperatorOptions(login=login, **options))

        settings = Settings(
            store_mount_path=str(store),
            store_mac_key=TEST_MAC_KEY,
            transfer_key=TEST_TRANSFER_KEY,
            reconcile_interval_seconds=60.0,
            namespaces=[],
            log_format="plain",
        )
        cluster = Cluster(api)
        async with zero_stage(
            cluster, store, settings, work, model_root, start_operator, idle_seconds=IDLE_SECONDS
        ) as stage:
            yield stage, api


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="modelops-bench-zero-"))
    model_root = work / "models"
    write_model(model_root, NAME, scale=1.0)
    async with bench_stage(work, model_root) as (stage, api):
        held = await cycles(stage, api)
    plain = await baseline(model_root, work)
    held["agent_rss_mib"] = agent_rss_mib()
    payload = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "idle_seconds": IDLE_SECONDS,
        "scale_to_zero": held,
        "baseline_no_holding": plain,
    }
    path = write_results("scale_to_zero", payload)
    brief = {k: v for k, v in held.items() if k != "rows"}
    print(brief)
    print({k: v for k, v in plain.items() if k != "rows"})
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.run(main())
