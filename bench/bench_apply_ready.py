"""apply -> Ready, per phase: a first deploy of a tiny model and a serving-only edit, with the
default spec (Router mode, default canary: steps 10/50/100, a 15 s analysis window each).

The whole operator runs against kmock (the faithful emulator); this benchmark plays the
cluster's controllers and kubelet, and runs every container the operator rendered for real:

- Jobs (source, build; tests/support/job_runner.py): every container of the pod with its own
  command, args and env (the real `modelops-build stage` / `build` / `publish` against a real
  engine server on loopback); the Job finished with the termination message they left.
- Triton pods (`Kubelet` below): the rendered `pull` init container run for real (the engine
  fetched from the engine server and checked), the ConfigMap's config.pbtxt put next to it, then
  a real tritonserver started on that repository (its start and model load); the pod reported
  Ready and put behind its revision's Service stand-in as soon as Triton answers ready.
- Validation Jobs: the rendered validation command run for real against the candidate's Triton.
- The router: the real HAProxy and agent, fed by the operator's route feed.

What a real cluster adds and kmock has not: scheduling, image pulls, container runtime start and
the kubelet's probe periods (1 s startup/readiness probes, up to 1 s after Triton is ready).
Each phase is timed from the moment this benchmark saw it (monotonic clock, 20 ms polling).

    .venv/bin/python -m bench.bench_apply_ready
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kmock

from bench.harness import write_results
from modelops_builder.triton_local import TritonProcess, free_port, start_triton
from modelops_operator.handlers import OperatorOptions
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name, router_name
from modelops_operator.render.revision import CONFIG_KEY, PULL_CONTAINER
from modelops_operator.render.tokens import route_token
from modelops_operator.settings import Settings
from tests.integration.test_store_server import STORE_SECRETS
from tests.support.apiserver import FaithfulEmulator
from tests.support.engine_store import TEST_MAC_KEY, TEST_TRANSFER_KEY, engine_server
from tests.support.job_runner import finish
from tests.support.kubernetes_emulator import (
    Cluster,
    declare_resources,
    emulator_login,
    operator_in_thread,
)
from tests.support.pod_runner import pod_containers, run_container
from tests.support.routed_cluster import ROUTER_IP, figures, metrics_by_ip, run_validation_job
from tests.support.router_harness import ServiceProxy, fed_router, services
from tests.support.torch_models import export_onnx, tiny_models

NAME = "m"
POLL_SECONDS = 0.02
REVISIONS = (1, 2)
DEADLINE_SECONDS = 180.0


def default_spec(sha: str) -> dict[str, Any]:
    """A tiny ONNX model from a claim, everything else the defaults (Router, default canary)."""
    return {
        "model": {"source": {"uri": "pvc://models/mlp.onnx", "sha256": sha}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 1},
    }


@dataclass
class Cluster2:
    """The controllers and kubelet this benchmark plays, stamping each step's time."""

    cluster: Cluster
    settings: Settings
    work: Path
    claim: Path
    store: Path
    proxies: dict[str, ServiceProxy]
    metrics: dict[str, str]
    marks: dict[str, float] = field(default_factory=dict)
    servers: dict[str, TritonProcess] = field(default_factory=dict)  # pod IP -> Triton
    failed: BaseException | None = None  # a pod or Job this benchmark ran failed
    events_seen: set[str] = field(default_factory=set)
    event_log: list[str] = field(default_factory=list)  # "<s after apply> reason: message"
    _seen: set[str] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def mark(self, what: str) -> None:
        self.marks.setdefault(what, time.monotonic())

    def _spawn(self, key: str, coro: Any) -> None:
        self._seen.add(key)
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failed = task.exception()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch Jobs and Deployments; run each new one's pod."""
        while not stop.is_set():
            for ns in ("default", self.settings.operator_namespace):
                for job in self.cluster.names(r.JOBS, ns):
                    if f"job/{job}" not in self._seen:
                        self._spawn(f"job/{job}", self.job(job, ns))
            for revision in REVISIONS:
                dep = self.cluster.get(r.DEPLOYMENTS, revision_name(NAME, revision))
                wanted = int(((dep or {}).get("spec") or {}).get("replicas", 0) or 0)
                if dep and wanted > 0 and f"rev/{revision}" not in self._seen:
                    self._spawn(f"rev/{revision}", self.triton_pod(revision))
            router = router_name(NAME)
            if self.cluster.get(r.DEPLOYMENTS, router) and "router" not in self._seen:
                self._spawn("router", self.router_pod(router))
            await asyncio.sleep(POLL_SECONDS)

    async def job(self, name: str, namespace: str) -> None:
        """Source, build or validation Job: its pod's containers run for real."""
        kind = "validation" if "-validate-" in name else "source" if "source" in name else "build"
        suffix = name.rsplit("-", 1)[-1] if kind == "validation" else ""
        label = f"{kind}{'_' + suffix if suffix else ''}"
        self.mark(f"{label}_job_created")
        job = self.cluster.get(r.JOBS, name, namespace)
        assert job is not None
        if kind == "validation":
            self.mark(f"{label}_started")
            message = await run_validation_job(
                self.cluster, name, self.servers, self.store, self.work
            )
            assert '"ok":true' in message.replace(" ", ""), message
            self.mark(f"{label}_done")
            return
        folder = self.work / name
        volumes = {
            "tmp": folder / "tmp",
            "publish-tmp": folder / "publish-tmp",
            "output": folder / "output",
            "store": self.store,
            "source": self.claim,
        }
        ran = None
        for container in pod_containers(job).values():
            self.mark(f"{kind}_{container['name']}_started")
            ran = await asyncio.to_thread(
                run_container, container, volumes, folder, secrets=STORE_SECRETS, timeout=300
            )
            self.mark(f"{kind}_{container['name']}_done")
            assert ran.returncode == 0, f"{name}/{container['name']}: {ran.stderr[-2000:]}"
        assert ran is not None
        await finish(self.cluster, name, namespace, ran)
        self.mark(f"{kind}_job_done")

    async def triton_pod(self, revision: int) -> None:
        """The kubelet: the pull init container, then tritonserver; Ready; into its Service."""
        deployment = revision_name(NAME, revision)
        self.mark(f"r{revision}_pod_created")
        dep = self.cluster.get(r.DEPLOYMENTS, deployment)
        config = self.cluster.get(r.CONFIGMAPS, deployment)
        assert dep is not None
        assert config is not None
        root = self.work / f"{deployment}-models"
        containers = pod_containers(dep)
        volumes = {"engine": root / NAME / "1", "tmp": root.parent / f"{deployment}-tmp"}
        self.mark(f"r{revision}_pull_started")
        pulled = await asyncio.to_thread(
            run_container, containers[PULL_CONTAINER], volumes, self.work, timeout=120
        )
        assert pulled.returncode == 0, pulled.stderr[-2000:]
        (root / NAME / CONFIG_KEY).write_text(config["data"][CONFIG_KEY])
        self.mark(f"r{revision}_pull_done")
        server = await asyncio.to_thread(start_triton, root)
        self.mark(f"r{revision}_triton_ready")
        ip = f"10.{revision}.0.1"
        self.servers[ip] = server
        self.metrics[ip] = server.metrics_url
        self.proxies[deployment].add_endpoint(f"r{revision}", server)
        await self.cluster.add_pod(deployment, ip)
        await self.cluster.ready_deployment(deployment)
        self.mark(f"r{revision}_pod_ready")

    async def router_pod(self, router: str) -> None:
        self.mark("router_pod_created")
        await self.cluster.add_pod(router, ROUTER_IP)
        await self.cluster.ready_deployment(router)
        self.mark("router_pod_ready")

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop(10.0)


async def watch_status(stage: Cluster2, router_figures: str, stop: asyncio.Event) -> None:
    """Stamp what status and the router show: canary steps, the router running each table."""
    while not stop.is_set():
        md = stage.cluster.get(r.MODELDEPLOYMENTS, NAME) or {}
        status = md.get("status") or {}
        rollout = status.get("rollout") or {}
        current = (status.get("revision") or {}).get("current")
        if rollout:
            stage.mark(f"canary_step_{rollout.get('step', 0)}")
            if rollout.get("validated"):
                stage.mark(f"validated_gen{status.get('observedGeneration')}")
        if current:
            stage.mark(f"r{current}_current")
        for event in stage.cluster.events(NAME) if md else []:
            if event["metadata"]["name"] not in stage.events_seen:
                stage.events_seen.add(event["metadata"]["name"])
                stage.mark(f"event_{event.get('reason')}")
                moment = round(time.monotonic() - stage.marks.get("apply", 0.0), 2)
                stage.event_log.append(f"{moment}s {event.get('reason')}: {event.get('message')}")
        with contextlib.suppress(Exception):
            seen = await figures(router_figures)
            for (metric, revision), value in seen.items():
                if metric == "modelops_router_weight" and value > 0:
                    stage.mark(f"router_routes_r{revision}")
                    if value >= 100:
                        stage.mark(f"router_routes_r{revision}_100")
        await asyncio.sleep(POLL_SECONDS * 5)


async def until_ready(stage: Cluster2, generation: int, revision: int) -> float:
    """The moment status says phase Ready for `generation`, serving `revision`."""
    cluster = stage.cluster
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if stage.failed is not None:
            raise stage.failed
        status = cluster.md(NAME).get("status") or {}
        if (
            status.get("phase") == "Ready"
            and status.get("observedGeneration") == generation
            and (status.get("revision") or {}).get("current") == revision
            and not status.get("rollout")
        ):
            return time.monotonic()
        await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"not Ready for generation {generation}: {cluster.md(NAME).get('status')}")


def relative(marks: dict[str, float], start: float) -> dict[str, float]:
    return {k: round(v - start, 3) for k, v in sorted(marks.items(), key=lambda kv: kv[1])}


def phases(marks: dict[str, float], names: list[tuple[str, str, str]]) -> dict[str, float | None]:
    """(phase, from mark, to mark) -> seconds."""
    return {
        phase: round(marks[b] - marks[a], 3) if a in marks and b in marks else None
        for phase, a, b in names
    }


FIRST = [
    ("apply_to_source_job", "apply", "source_job_created"),
    ("source_job", "source_job_created", "source_job_done"),
    ("source_done_to_build_job", "source_job_done", "build_job_created"),
    ("build_container", "build_build_started", "build_build_done"),
    ("publish_container", "build_publish_started", "build_publish_done"),
    ("build_done_to_deployment", "build_job_done", "r1_pod_created"),
    ("pull", "r1_pull_started", "r1_pull_done"),
    ("triton_start_and_load", "r1_pull_done", "r1_triton_ready"),
    ("pod_ready_to_validation_job", "r1_pod_ready", "validation_r1_job_created"),
    ("validation_job", "validation_r1_job_created", "validation_r1_done"),
    ("validation_to_router_table", "validation_r1_done", "router_routes_r1_100"),
    ("router_table_to_ready", "router_routes_r1_100", "ready"),
]
EDIT = [
    ("apply_to_deployment", "apply", "r2_pod_created"),
    ("pull", "r2_pull_started", "r2_pull_done"),
    ("triton_start_and_load", "r2_pull_done", "r2_triton_ready"),
    ("pod_ready_to_validation_job", "r2_pod_ready", "validation_r2_job_created"),
    ("validation_job", "validation_r2_job_created", "validation_r2_done"),
    ("validation_to_first_router_weight", "validation_r2_done", "router_routes_r2"),
    ("canary_steps_to_router_100", "router_routes_r2", "router_routes_r2_100"),
    ("router_100_to_ready", "router_routes_r2_100", "ready"),
]


@contextlib.asynccontextmanager
async def bench_cluster(work: Path) -> AsyncIterator[tuple[Cluster2, str]]:
    """kmock, the operator, the engine server, Service stand-ins and the fed router."""
    store = work / "store"
    store.mkdir()
    claim = work / "pvc" / "models"
    claim.mkdir(parents=True)
    sha = export_onnx(tiny_models()["mlp"], claim / "mlp.onnx")
    async with FaithfulEmulator() as api, kmock.Server(api), contextlib.AsyncExitStack() as stack:
        declare_resources(api)
        port = free_port()
        server = await stack.enter_async_context(engine_server(store, work / "inbox"))
        settings = Settings(
            store_mount_path=str(store),
            store_mac_key=TEST_MAC_KEY,
            transfer_key=TEST_TRANSFER_KEY,
            reconcile_interval_seconds=60.0,
            namespaces=[],
            log_format="plain",
            routes_url=f"http://127.0.0.1:{port}",
            store_server=server,
            onnx_serving_backend="python",  # this Triton build has only the python backend
        )
        layout: dict[str, dict[str, Any]] = {revision_name(NAME, n): {} for n in REVISIONS}
        proxies = stack.enter_context(services(work, layout))
        feed = f"http://127.0.0.1:{port}/routes/default/{NAME}"
        router = await stack.enter_async_context(
            fed_router(proxies, feed, route_token(settings, "default", NAME))
        )
        metrics = {ROUTER_IP: router.figures_url}
        await stack.enter_async_context(
            operator_in_thread(
                OperatorOptions(
                    login=emulator_login(str(api.url)),
                    settings=settings,
                    metrics_url=metrics_by_ip(metrics),
                    metrics_host="127.0.0.1",
                    metrics_port=port,
                )
            )
        )
        cluster = Cluster(api)
        stage = Cluster2(cluster, settings, work, claim, store, proxies, metrics)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(stage.run(stop)),
            asyncio.create_task(watch_status(stage, router.figures_url, stop)),
        ]
        try:
            yield stage, sha
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(stage.stop)


async def measure(stage: Cluster2, apply: Any, generation: int, revision: int) -> dict[str, Any]:
    stage.marks.clear()
    stage.event_log.clear()
    stage.mark("apply")
    await apply()
    stage.marks["ready"] = await until_ready(stage, generation, revision)
    start = stage.marks["apply"]
    await asyncio.sleep(POLL_SECONDS * 10)  # the last Events
    return {
        "apply_to_ready_s": round(stage.marks["ready"] - start, 3),
        "marks_s": relative(stage.marks, start),
        "events": list(stage.event_log),
    }


def builder_stages(store: Path) -> dict[str, float]:
    """The builder's own stage timings, from the engine.json it published."""
    (manifest,) = store.glob("*/engine.json")
    return dict(json.loads(manifest.read_bytes()).get("stageSeconds") or {})


async def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="modelops-bench-apply-"))
    load_before = os.getloadavg()
    async with bench_cluster(work) as (stage, sha):
        first = await measure(stage, lambda: stage.cluster.create_md(NAME, default_spec(sha)), 1, 1)
        first["phases_s"] = phases({**stage.marks}, FIRST)
        first["builder_stages_s"] = builder_stages(stage.store)
        print("first deploy", first, flush=True)
        patch = {"serving": {"dynamicBatching": {"maxQueueDelayMicroseconds": 200}}}
        edit = await measure(stage, lambda: stage.cluster.update_spec(NAME, patch), 2, 2)
        edit["phases_s"] = phases({**stage.marks}, EDIT)
        marks = edit["marks_s"]
        # Up to the candidate's first canary weight (pod, pull, Triton, validation), then
        # the canary's analysis windows: failureThreshold (2) passes per step, and a first
        # round that only takes the counters' baseline.
        edit["to_first_canary_weight_s"] = marks.get("router_routes_r2")
        edit["canary_s"] = round(edit["apply_to_ready_s"] - marks.get("router_routes_r2", 0.0), 3)
        print("serving-only edit", edit, flush=True)
    payload = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, no GPU",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "spec": "defaults: Router mode, canary steps [10, 50, 100], analysisIntervalSeconds 15",
        "first_deploy": first,
        "serving_only_edit": edit,
        "targets_s": {"first_deploy": 10, "serving_only_edit": 12},
    }
    print(f"wrote {write_results('apply_ready', payload)}")


if __name__ == "__main__":
    asyncio.run(main())
