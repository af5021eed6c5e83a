"""The cluster's part for Router-mode operator tests: real Tritons behind Service stand-ins, the
real router fed by the operator's route feed, and validation Jobs run with the real command.

kmock has no kubelet and no network. The test plays both: a pod in kmock gets a made-up IP, and
`metrics_url` maps that IP to the real process behind it (a tritonserver's metrics, or the router
agent's figures). A validation Job is run with the exact command and request the operator put
in it; only what a pod's network and mounts would give it is translated: the candidate pods'
IPs to the loopback gRPC ports of their tritonservers, and the store entry's mount to the folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from modelops_builder.triton_local import TritonProcess, free_port
from modelops_contract.manifest import EngineManifest, ProfilePoint
from modelops_contract.request import TensorSig
from modelops_contract.validation import INPUT_PREFIX, OUTPUT_PREFIX, ValidationRequest
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import (
    build_job_name,
    revision_name,
    router_name,
    validation_job_name,
)
from modelops_operator.render.tokens import route_token
from modelops_operator.settings import Settings
from tests.support.engine_store import engine_server, entry_dir, seal
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import MODEL_SHA, finish_source, key_of, summary
from tests.support.router_harness import FedRouter, ServiceProxy, fed_router, services
from tests.support.triton_models import INPUT_NAME, OUTPUT_NAME, WIDTH

Obj = dict[str, Any]
NAME = "m"
INTERVAL, THRESHOLD = 2, 2
ROUTER_IP, R1_IP, R2_IP = "10.99.0.1", "10.1.0.1", "10.2.0.1"


def publish_entry(store: Path, key: str, width: int, reference_scale: float = 1.0) -> None:
    """A complete store entry for y = x * scale: engine.json and the builder's validation set
    (the fp32 reference outputs the served engine must reproduce)."""
    manifest = EngineManifest(
        key=key,
        engine="onnxruntime",
        precision="fp32",
        serving_backend="onnxruntime",
        model_name="model",
        model_file="model.onnx",
        inputs=[TensorSig(name=INPUT_NAME, data_type="FP32", dims=[width])],
        outputs=[TensorSig(name=OUTPUT_NAME, data_type="FP32", dims=[width])],
        max_batch_size=8,
        opt_batch_size=8,
        source_sha256=MODEL_SHA,
        format="onnx",
        profile=[ProfilePoint(batch=8, p50_ms=1.0, p99_ms=2.0, throughput=4000.0)],
        # The stages a builder records (no builder runs here: fixed figures).
        stage_seconds={"fetch": 0.2, "export": 0.6, "engine": 1.5, "gate": 0.4, "profile": 0.9},
        created_at=datetime.now(UTC).isoformat(),
    )
    entry = entry_dir(store, key)
    inputs = np.random.default_rng(7).standard_normal((8, width)).astype(np.float32)
    np.savez(
        entry / "validation.npz",
        **{f"{INPUT_PREFIX}{INPUT_NAME}": inputs},
        **{f"{OUTPUT_PREFIX}{OUTPUT_NAME}": inputs * reference_scale},
    )
    version = entry / "repository" / "model" / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.onnx").write_bytes(b"served by the test's own Tritons")
    seal(entry, manifest)


def metrics_by_ip(targets: Mapping[str, str]) -> Callable[[Mapping[str, Any]], str]:
    """metrics_url for the operator: {pod IP: URL}; other pods get an unreachable URL."""

    def metrics_url(pod: Mapping[str, Any]) -> str:
        ip = str((pod.get("status") or {}).get("podIP") or "")
        return targets.get(ip, "http://127.0.0.1:9/metrics")

    return metrics_url


async def run_validation_job(
    cluster: Cluster,
    job_name: str,
    grpc_by_ip: Mapping[str, TritonProcess],
    store: Path,
    workdir: Path,
) -> str:
    """Run the Job's container command for real; finish the Job with its termination message.

    Returns the termination message."""
    job = cluster.get(r.JOBS, job_name)
    assert job is not None, f"no Job {job_name}"
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    request = ValidationRequest.model_validate_json(args[args.index("--request") + 1])
    targets = []
    for target in request.targets:
        ip = target.rsplit(":", 1)[0]
        targets.append(grpc_by_ip[ip].grpc_url)
    # The entry's set comes from the engine server, as rendered (a real one on loopback).
    translated = request.model_copy(update={"targets": targets})
    args[args.index("--request") + 1] = translated.model_dump_json(by_alias=True)
    log = workdir / f"{job_name}.termination-log"
    result = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / container["command"][0]), *args],
        capture_output=True,
        text=True,
        env={"MODELOPS_TERMINATION_LOG": str(log), "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=120,
    )
    message = log.read_text()
    await cluster.finish_job(job_name, message, ok=result.returncode == 0)
    return message


def merged(base: Obj, patch: Obj) -> Obj:
    """`base` with `patch` merged in, maps key by key."""
    out = dict(base)
    for key, value in patch.items():
        same = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if same else value
    return out


def canary_spec(sha: str, mode: str = "Router", no_traffic: str = "Promote") -> Obj:
    """One replica, canary 50% -> 100% in traffic `mode`, analyses every INTERVAL seconds."""
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": sha}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 1},
        "rollout": {
            "strategy": "Canary",
            "traffic": {"mode": mode},
            "noTraffic": no_traffic,
            "canary": {
                "steps": [50, 100],
                "analysisIntervalSeconds": INTERVAL,
                "failureThreshold": THRESHOLD,
                "maxErrorRate": 0.05,
            },
        },
    }


@dataclass
class Stage:
    """Everything one test runs against."""

    cluster: Cluster
    store: Path
    settings: Settings
    workdir: Path
    router: FedRouter | None  # None in Replicas mode
    proxies: dict[str, ServiceProxy]  # by Service name
    pods: dict[str, TritonProcess]  # pod IP -> the tritonserver behind it

    @property
    def client_urls(self) -> tuple[str, str]:
        """HTTP and gRPC addresses clients use: the router, or the ModelDeployment's Service."""
        if self.router is not None:
            return self.router.router.http_url, self.router.router.grpc_url
        ports = self.proxies[NAME].ports
        return f"127.0.0.1:{ports['http']}", f"127.0.0.1:{ports['grpc']}"

    async def build(self, sha: str, width: int, scale: float = 1.0) -> str:
        """The source and build Jobs of the stored spec finish with an entry for y = x * scale."""
        key = key_of(self.cluster, NAME, self.settings)
        await finish_source(self.cluster, self.settings, NAME)
        job = build_job_name("default", NAME, key)
        build_ns = self.settings.operator_namespace
        await eventually(
            lambda: self.cluster.get(r.JOBS, job, build_ns), what=f"build Job of {sha[:6]}"
        )
        publish_entry(self.store, key, width, scale)
        await self.cluster.finish_job(job, summary(key), namespace=build_ns)
        return key

    async def start_pod(self, revision: int, ip: str) -> None:
        """The revision's Deployment gets its pod at `ip`, ready."""
        deployment = revision_name(NAME, revision)
        await eventually(lambda: self.cluster.get(r.DEPLOYMENTS, deployment), what=deployment)
        await self.cluster.add_pod(deployment, ip)
        await self.cluster.ready_deployment(deployment)
        if self.router is None:  # the Service selects every revision's Triton pods
            self.proxies[NAME].add_endpoint(f"r{revision}", self.pods[ip])

    async def validate(self, revision: int) -> str:
        """The revision's validation Job, run for real against its pods."""
        job = validation_job_name(NAME, revision)
        await eventually(lambda: self.cluster.get(r.JOBS, job), what=f"validation Job {job}")
        return await run_validation_job(self.cluster, job, self.pods, self.store, self.workdir)

    def status(self) -> Obj:
        return dict(self.cluster.md(NAME).get("status") or {})

    async def router_runs(self) -> dict[int, int] | None:
        """The weights HAProxy runs, once it runs the table of the stored status; else None."""
        assert self.router is not None
        seen = await figures(self.router.figures_url)
        version = (self.status().get("traffic") or {}).get("version")
        if seen.get(("modelops_router_applied_version", "")) != version:
            return None
        return {
            int(revision): int(value)
            for (metric, revision), value in seen.items()
            if metric == "modelops_router_weight"
        }

    def _figures_url(self) -> str:
        assert self.router is not None, "figures come from the router"
        return self.router.figures_url

    async def requests_to(self, revision: int) -> float:
        """Client requests the router sent to a revision so far."""
        return sum(
            value
            for (metric, rev), value in (await figures(self._figures_url())).items()
            if metric == "modelops_router_responses_total" and rev == str(revision)
        )


async def _router_pod(cluster: Cluster) -> None:
    router = router_name(NAME)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, router), what="router Deployment")
    await cluster.add_pod(router, ROUTER_IP)
    await cluster.ready_deployment(router)


async def figures(url: str) -> dict[tuple[str, str], float]:
    """(metric, revision) -> value from the agent's /metrics (it runs on this event loop)."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            revision = sample.labels.get("revision", "")
            key = (sample.name, revision)
            out[key] = out.get(key, 0.0) + sample.value
    return out


async def runs(stage: Stage, weights: dict[int, int]) -> bool:
    """The router runs the stored status's table, and it has these weights."""
    return await stage.router_runs() == weights


@contextlib.asynccontextmanager
async def serving_stage(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    workdir: Path,
    pods: Mapping[str, TritonProcess],
    start_operator: Callable[..., contextlib.AbstractAsyncContextManager[Any]],
    mode: str = "Router",
    no_traffic: str = "Promote",
    spec_patch: Obj | None = None,
    on_stage: Callable[[Stage], Awaitable[None]] | None = None,
) -> AsyncIterator[Stage]:
    """Revision 1 serving on the server of R1_IP; revision 2's pods will be the server of R2_IP.
    Router mode: the router in front of a Service per revision. Replicas mode: the
    ModelDeployment's Service over every revision's pods. `start_operator(**options)` runs the
    operator; `spec_patch` is merged into the spec; `on_stage` sees the stage before the
    ModelDeployment is created (to point monitoring at its processes)."""
    port = free_port()
    if mode == "Router":
        layout = {
            revision_name(NAME, 1): {"r1": pods[R1_IP]},
            revision_name(NAME, 2): {"r2": pods[R2_IP]},
        }
    else:
        layout = {NAME: {}}  # start_pod adds each revision's pod
    feed = f"http://127.0.0.1:{port}/routes/default/{NAME}"
    urls = {ip: server.metrics_url for ip, server in pods.items()}
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(engine_server(store, workdir / "inbox"))
        routed = settings.model_copy(
            update={"routes_url": f"http://127.0.0.1:{port}", "store_server": server}
        )
        proxies = stack.enter_context(services(workdir, layout))
        router = None
        if mode == "Router":
            token = route_token(routed, "default", NAME)
            router = await stack.enter_async_context(fed_router(proxies, feed, token))
            urls[ROUTER_IP] = router.figures_url
        await stack.enter_async_context(
            start_operator(
                settings=routed,
                metrics_url=metrics_by_ip(urls),
                metrics_host="127.0.0.1",
                metrics_port=port,
            )
        )
        stage = Stage(cluster, store, routed, workdir, router, proxies, dict(pods))
        if on_stage is not None:
            await on_stage(stage)
        spec = merged(canary_spec("a" * 64, mode, no_traffic), spec_patch or {})
        await cluster.create_md(NAME, spec)
        await stage.build("a" * 64, WIDTH)
        await stage.start_pod(1, R1_IP)
        first = [stage.validate(1)] + ([_router_pod(cluster)] if router is not None else [])
        await asyncio.gather(*first)
        await eventually(
            lambda: stage.status().get("revision", {}).get("current") == 1,
            what="revision 1 serving",
        )
        if router is not None:
            # Router pods take clients once they run a table that serves (their readiness).
            await eventually(lambda: runs(stage, {1: 100}), 5, "router runs r1 100%")
        yield stage
