"""The cluster's part in operator tests: finish builds, publish entries, read status."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from modelops_contract.integrity import receipt_scope, sha256_hex, signed_manifest_bytes, token
from modelops_contract.key import key_digest
from modelops_contract.manifest import EngineManifest, EntryFile, ProfilePoint
from modelops_contract.request import AccuracyReport, BuildSummary, LatencyReport, TensorSig
from modelops_contract.staging import StageSummary
from modelops_operator.api import ModelDeployment
from modelops_operator.decide.build import desired_key
from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import (
    build_job_name,
    revision_name,
    source_job_name,
    validation_job_name,
)
from modelops_operator.settings import Settings
from tests.support.engine_store import TEST_MAC_KEY, TEST_TRANSFER_KEY
from tests.support.kubernetes_emulator import Cluster, eventually

Obj = dict[str, Any]
T = TypeVar("T")
MODEL_SHA = hashlib.sha256(b"tiny model").hexdigest()
# `async with run_operator() as op:` (the fixture in tests/integration/conftest.py)
RunOperator = Callable[..., contextlib.AbstractAsyncContextManager[Operator]]


async def in_operator(op: Operator, coro: Awaitable[T]) -> T:
    """Run a coroutine in the operator's own event loop (its thread) and wait for it."""
    assert op.loop is not None, "the operator has not started"
    future = asyncio.run_coroutine_threadsafe(coro, op.loop)  # type: ignore[arg-type]
    return await asyncio.wrap_future(future)


def spec(sha: str = MODEL_SHA, replicas: int = 1, delay: int = 100, mode: str = "Replicas") -> Obj:
    """A valid ONNX Runtime spec that rolls out at once (Recreate); traffic by replicas unless
    a test is about the router."""
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": sha}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": replicas, "dynamicBatching": {"maxQueueDelayMicroseconds": delay}},
        "rollout": {"strategy": "Recreate", "traffic": {"mode": mode}},
    }


def phase(cluster: Cluster, name: str, namespace: str = "default") -> str | None:
    """status.phase of a ModelDeployment."""
    return (cluster.md(name, namespace).get("status") or {}).get("phase")


def condition(cluster: Cluster, name: str, ctype: str) -> Obj:
    """One condition of a ModelDeployment's status."""
    conds = (cluster.md(name).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == ctype), {})


def key_of(cluster: Cluster, name: str, settings: Settings, namespace: str = "default") -> str:
    """The engine key the operator wants for the stored ModelDeployment."""
    return desired_key(ModelDeployment.from_body(cluster.md(name, namespace)).spec, settings)


def engine_manifest(key: str) -> EngineManifest:
    """The manifest of a small ONNX Runtime engine for `key` (no file digests yet)."""
    sig = [TensorSig(name="x", data_type="FP32", dims=[16])]
    return EngineManifest(
        key=key,
        engine="onnxruntime",
        precision="fp32",
        serving_backend="onnxruntime",
        model_name="model",
        model_file="model.onnx",
        inputs=sig,
        outputs=[TensorSig(name="y", data_type="FP32", dims=[4])],
        max_batch_size=8,
        opt_batch_size=8,
        source_sha256=MODEL_SHA,
        format="onnx",
        profile=[ProfilePoint(batch=8, p50_ms=1.0, p99_ms=2.0, throughput=4000.0)],
        created_at=datetime.now(UTC).isoformat(),
    )


def publish(store: Path, key: str, *, mac_key: str | None = TEST_MAC_KEY) -> str:
    """What a successful publishing step leaves in the store: engine.json listing every file's
    sha256, with the store's MAC (the entry is complete); the sha256 of engine.json."""
    manifest = engine_manifest(key)
    entry = store / key_digest(key)
    entry.mkdir(parents=True, exist_ok=True)
    model = entry / "repository" / "model" / "1" / "model.onnx"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"an engine")
    files = [
        EntryFile(path="repository/model/1/model.onnx", sha256=sha256_hex(b"an engine"), size=9)
    ]
    data = manifest.model_copy(update={"files": files}).to_wire()
    raw = signed_manifest_bytes(data, mac_key.encode() if mac_key else None)
    (entry / "engine.json").write_bytes(raw)
    return sha256_hex(raw)


def summary(key: str, ok: bool = True) -> Obj:
    """The builder's termination message."""
    if not ok:
        return BuildSummary(
            ok=False, reason="AccuracyGateFailed", message="max abs error 0.5 > atol 0.01"
        ).to_wire()
    return BuildSummary(
        ok=True,
        key=key,
        uri=f"pvc://modelops-engines/{key_digest(key)}",
        engine="onnxruntime",
        precision="fp32",
        accuracy=AccuracyReport(max_abs_error=1e-6, max_rel_error=1e-5, passed=True),
        latency_ms=LatencyReport(p50=1.0, p99=2.0),
        throughput=4000.0,
    ).to_wire()


def stage_summary(cluster: Cluster, name: str, *, kept: bool, namespace: str = "default") -> Obj:
    """What a source Job leaves: the engine server's receipt for the source's bytes."""
    md = cluster.md(name, namespace)
    sha, uid = md["spec"]["model"]["source"]["sha256"], md["metadata"]["uid"]
    receipt = token(TEST_TRANSFER_KEY.encode(), receipt_scope(sha, uid, kept=kept))
    return StageSummary(ok=True, sha256=sha, bytes=1024, kept=kept, receipt=receipt).to_wire()


async def finish_source(
    cluster: Cluster, settings: Settings, name: str, *, namespace: str = "default"
) -> str:
    """The source Job appears in the ModelDeployment's namespace; it ends with a receipt."""
    key = key_of(cluster, name, settings, namespace)
    job = source_job_name(name, key)
    await eventually(lambda: cluster.get(r.JOBS, job, namespace), what=f"source Job {job}")
    keep = cluster.get(r.JOBS, job, namespace)["metadata"]["annotations"]["modelops.dev/keep"]  # type: ignore[index]
    summary = stage_summary(cluster, name, kept=keep == "true", namespace=namespace)
    await cluster.finish_job(job, summary, namespace=namespace)
    return job


async def finish_build(
    cluster: Cluster,
    store: Path,
    settings: Settings,
    name: str,
    *,
    namespace: str = "default",
    ok: bool = True,
) -> str:
    """Source Job -> (receipt) -> build Job in the operator's namespace -> (published, when ok)."""
    key = key_of(cluster, name, settings, namespace)
    await finish_source(cluster, settings, name, namespace=namespace)
    job = build_job_name(namespace, name, key)
    build_ns = settings.operator_namespace
    await eventually(lambda: cluster.get(r.JOBS, job, build_ns), what=f"build Job {job}")
    await eventually(lambda: phase(cluster, name, namespace) == "Building", what="Building")
    if ok:
        publish(store, key)
    await cluster.finish_job(job, summary(key, ok=ok), ok=ok, namespace=build_ns)
    return key


async def build_and_serve(
    cluster: Cluster, store: Path, settings: Settings, name: str, ip: str = "10.250.1.1"
) -> str:
    """Create -> source and build Jobs -> (test finishes them) -> revision 1 -> Ready."""
    key = await finish_build(cluster, store, settings, name)
    await serve_revision(cluster, name, 1, ip=ip)
    return key


async def validate_revision(
    cluster: Cluster,
    name: str,
    revision: int,
    ip: str | None = None,
    ok: bool = True,
    namespace: str = "default",
) -> None:
    """The revision's Deployment becomes ready with one pod; its validation run finishes."""
    rev = revision_name(name, revision)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, rev, namespace), what=f"Deployment {rev}")
    if cluster.get(r.PODS, f"{rev}-0", namespace) is None:
        await cluster.add_pod(rev, ip or f"10.250.{revision}.1", namespace=namespace)
    await cluster.ready_deployment(rev, namespace)
    job = validation_job_name(name, revision)
    await eventually(lambda: cluster.get(r.JOBS, job, namespace), what=f"validation Job {job}")
    await cluster.finish_validation(job, ok=ok, namespace=namespace)


async def serve_revision(
    cluster: Cluster,
    name: str,
    revision: int,
    ip: str | None = None,
    ok: bool = True,
    namespace: str = "default",
) -> None:
    """validate_revision, then wait until the revision serves (when the run passed)."""
    await validate_revision(cluster, name, revision, ip, ok, namespace)
    if ok:
        await eventually(
            lambda: (
                (cluster.md(name, namespace).get("status") or {}).get("revision", {}).get("current")
                == revision
            ),
            what=f"revision {revision} serving",
        )
