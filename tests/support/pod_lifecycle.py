"""A pod's termination as Kubernetes runs it, applied to a real process on loopback.

Deleting a pod starts two things at once. The endpoints controller drops the pod from its
Services, and that reaches kube-proxy on every node some time later (`propagation_seconds`).
The kubelet runs the container's preStop hook, sends SIGTERM when the hook returns, and SIGKILL
when the pod's grace period, counted from the deletion, has run out.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelops_contract.manifest import EngineManifest
from modelops_operator.api import ModelDeployment
from modelops_operator.render.revision import render_revision
from modelops_operator.settings import Settings


@dataclass(frozen=True)
class Termination:
    """When each step happened, in seconds after the deletion."""

    left_service: float
    sigterm: float
    exited: float
    killed: bool


def pre_stop_command(pod_spec: Mapping[str, Any], container: str) -> list[str] | None:
    """The exec preStop hook of `container`, if it has one."""
    for spec in pod_spec["containers"]:
        if spec["name"] == container:
            hook = (spec.get("lifecycle") or {}).get("preStop") or {}
            command = (hook.get("exec") or {}).get("command")
            return list(command) if command else None
    raise KeyError(f"no container {container!r} in the pod")


def terminate_pod(
    pod_spec: Mapping[str, Any],
    container: str,
    process: subprocess.Popen[bytes],
    leave_service: Callable[[], None],
    propagation_seconds: float,
) -> Termination:
    """Delete the pod: endpoints drop after `propagation_seconds`; the rendered preStop hook
    runs for real, then SIGTERM, then SIGKILL at the grace period."""
    start = time.monotonic()
    left: list[float] = []

    def drop_endpoint() -> None:
        leave_service()
        left.append(time.monotonic() - start)

    timer = threading.Timer(propagation_seconds, drop_endpoint)
    timer.start()
    grace = float(pod_spec["terminationGracePeriodSeconds"])
    command = pre_stop_command(pod_spec, container)
    if command:
        subprocess.run(command, timeout=grace, check=False)
    sigterm = time.monotonic() - start
    process.send_signal(signal.SIGTERM)
    killed = False
    try:
        process.wait(max(0.0, grace - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        killed = True
    exited = time.monotonic() - start
    timer.join()
    return Termination(left[0], sigterm, exited, killed)


def triton_pod_spec(drain_seconds: int) -> dict[str, Any]:
    """The pod template the operator renders for a revision's Triton pods."""
    md = ModelDeployment.from_body(
        {
            "metadata": {"name": "m", "namespace": "ml", "uid": "u-1", "generation": 1},
            "spec": {"model": {"source": {"uri": "pvc://models/m.onnx", "sha256": "cd" * 32}}},
        }
    )
    engine = EngineManifest.model_validate(
        {
            "key": "sha256:" + "ab" * 32,
            "engine": "onnxruntime",
            "precision": "fp32",
            "servingBackend": "onnxruntime",
            "modelName": "model",
            "modelFile": "model.onnx",
            "inputs": [{"name": "x", "dataType": "FP32", "dims": [4]}],
            "outputs": [{"name": "y", "dataType": "FP32", "dims": [4]}],
            "maxBatchSize": 8,
            "optBatchSize": 4,
            "sourceSha256": "cd" * 32,
            "format": "onnx",
            "createdAt": "2026-01-01T00:00:00Z",
        }
    )
    settings = Settings(store_pvc="engines", drain_seconds=drain_seconds)
    deployment = next(
        o for o in render_revision(md, 1, engine, settings) if o["kind"] == "Deployment"
    )
    return dict(deployment["spec"]["template"]["spec"])
