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
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelops_builder.triton_local import TritonProcess
from modelops_contract.key import key_digest
from modelops_contract.manifest import EngineManifest, ProfilePoint
from modelops_contract.request import TensorSig
from modelops_contract.validation import INPUT_PREFIX, OUTPUT_PREFIX, ValidationRequest
from modelops_operator.k8s import resources as r
from tests.support.kubernetes_emulator import Cluster
from tests.support.operator_flow import MODEL_SHA
from tests.support.triton_models import INPUT_NAME, OUTPUT_NAME

Obj = dict[str, Any]


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
        created_at=datetime.now(UTC).isoformat(),
    )
    entry = store / key_digest(key)
    entry.mkdir(parents=True, exist_ok=True)
    inputs = np.random.default_rng(7).standard_normal((8, width)).astype(np.float32)
    np.savez(
        entry / "validation.npz",
        **{f"{INPUT_PREFIX}{INPUT_NAME}": inputs},
        **{f"{OUTPUT_PREFIX}{OUTPUT_NAME}": inputs * reference_scale},
    )
    (entry / "engine.json").write_text(json.dumps(manifest.to_wire()))


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
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    entry = store / mounts[request.reference_set]["subPath"]
    targets = []
    for target in request.targets:
        ip = target.rsplit(":", 1)[0]
        targets.append(grpc_by_ip[ip].grpc_url)
    translated = request.model_copy(update={"targets": targets, "reference_set": str(entry)})
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
    ok = result.returncode == 0
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status: Obj = {
        "succeeded" if ok else "failed": 1,
        "active": 0,
        "conditions": [{"type": "Complete" if ok else "Failed", "status": "True"}],
        "completionTime": now,
        "terminationMessage": message,
    }
    await cluster.patch_status(r.JOBS, job_name, status)
    return message
