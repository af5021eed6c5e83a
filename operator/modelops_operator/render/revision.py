"""One revision: a ConfigMap with config.pbtxt and a Deployment running Triton."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from modelops_contract.enums import EngineKind, ServingBackend
from modelops_contract.layout import VERSION_DIR
from modelops_contract.manifest import EngineManifest
from modelops_contract.tritonconfig import ServingOptions, render_model_config

from ..api import ModelDeployment, ModelDeploymentSpec
from ..settings import Settings
from .common import (
    ANNOTATION_ENGINE_KEY,
    ANNOTATION_GENERATION,
    ANNOTATION_MANIFEST_SHA256,
    ANNOTATION_RETRY,
    ANNOTATION_SERVING_HASH,
    LABEL_DEPLOYMENT,
    LABEL_REVISION,
    container_security_context,
    gpu_scheduling,
    object_meta,
    pod_security_context,
    tmp_volume,
    triton_labels,
)
from .names import label_value, revision_name
from .tokens import entry_token, transfer_key_fingerprint, triton_admin_key

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MODEL_ROOT = "/models"
CONFIG_KEY = "config.pbtxt"
# Triton's --exit-timeout-secs: after SIGTERM it refuses new connections at once, serves the open
# ones (keep-alive HTTP, gRPC channels) and in-flight requests, and exits when they are done or
# this runs out. The pod's grace period covers the preStop drain, this, and a margin, so the
# kubelet's SIGKILL never lands before Triton is done.
EXIT_TIMEOUT_SECONDS = 30
GRACE_MARGIN_SECONDS = 5
# A pod is Ready at most a second after Triton loaded its engine: a scale-to-zero wake and
# every rollout step wait for it (kubelet probes the local port; a GET per second is nothing).
STARTUP_PERIOD_SECONDS = 1
READY_PERIOD_SECONDS = 1
READY_FAILURES = 10  # out of the Service after 10 s of failed checks
GPU_RESOURCE = "nvidia.com/gpu"
PULL_CONTAINER = "pull-engine"
# Triton's APIs that change or expose the server rather than serve it: loading and unloading
# models, shared-memory regions (a client could map memory), tracing and log settings. They
# answer only requests carrying ADMIN_HEADER with the ModelDeployment's admin key, which the
# operator derives from its transfer key (render/tokens.py); the router drops the header from
# every client request (render/haproxy.py). Names as tritonserver's --help lists them.
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
ADMIN_HEADER = "modelops-triton-admin"
# Over gRPC, Triton reads the key from this metadata key instead (checked on tritonserver 2.51).
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"


def _quantities(values: dict[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in sorted((values or {}).items())}


def triton_resources(spec: ModelDeploymentSpec, settings: Settings) -> dict[str, dict[str, str]]:
    """spec.serving.resources, else the operator default; TensorRT plans always get a GPU."""
    source = (
        spec.serving.resources.to_wire()
        if spec.serving.resources is not None
        else settings.default_triton_resources
    )
    out = {part: _quantities(source.get(part)) for part in ("requests", "limits")}
    if str(spec.build.engine) == "tensorrt" and GPU_RESOURCE not in out["limits"]:
        out["limits"][GPU_RESOURCE] = "1"
    return {part: values for part, values in out.items() if values}


def _has_gpu(resources: dict[str, dict[str, str]]) -> bool:
    limit = resources.get("limits", {}).get(GPU_RESOURCE, "0")
    return limit not in ("0", "")


def serving_backend(spec: ModelDeploymentSpec, settings: Settings) -> ServingBackend | None:
    """The Triton backend override: ONNX Runtime engines follow the operator's setting."""
    if spec.build.engine == EngineKind.ONNXRUNTIME:
        return ServingBackend(settings.onnx_serving_backend)
    return None


def serving_options(spec: ModelDeploymentSpec, settings: Settings) -> ServingOptions:
    """The config.pbtxt knobs that spec.serving controls."""
    batching = spec.serving.dynamic_batching
    return ServingOptions(
        max_queue_delay_microseconds=batching.max_queue_delay_microseconds if batching else None,
        instances=spec.serving.instances_per_replica,
        gpu=_has_gpu(triton_resources(spec, settings)),
        backend=serving_backend(spec, settings),
    )


def serving_hash(spec: ModelDeploymentSpec, settings: Settings) -> str:
    """Digest of everything except the engine and the replica count that shapes a revision's
    pods: a change here rolls out a new revision of the same engine, without a rebuild."""
    serving = spec.serving.to_wire()
    serving.pop("replicas", None)
    material = {
        "serving": serving,
        "resources": triton_resources(spec, settings),
        "backend": serving_backend(spec, settings),
        "gpu": spec.build.gpu.product if spec.build.gpu else None,
        "image": settings.triton_image,
        "startupSeconds": settings.triton_startup_seconds,
        "server": settings.store_server,
        "puller": settings.builder_image,
        # The pods' entry tokens are made with the transfer key: a new key, new pods.
        "tokens": transfer_key_fingerprint(settings),
        # Pods of a release without the admin restriction are replaced by restricted ones.
        "restricted": list(RESTRICTED_APIS),
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def default_replicas(spec: ModelDeploymentSpec) -> int:
    """Replicas a revision starts with when the caller names none."""
    return spec.scaling.floor if spec.scaling else spec.serving.replicas


def render_configmap(
    md: ModelDeployment, revision: int, manifest: EngineManifest, settings: Settings
) -> dict[str, Any]:
    """ConfigMap `<name>-r<N>` holding the revision's config.pbtxt."""
    name = md.metadata.name
    config = render_model_config(manifest, name, serving_options(md.spec, settings))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            md, revision_name(name, revision), triton_labels(name, revision, manifest.key)
        ),
        "data": {CONFIG_KEY: config},
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _engine_source(
    md: ModelDeployment, manifest: EngineManifest, settings: Settings, manifest_sha256: str | None
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(volume, mount, init containers) that put the engine's version dir at /models/NAME/1.

    The pod never sees the store: the builder image pulls the entry from the engine server
    into an emptyDir, checking engine.json against the digest the operator verified (its MAC)
    and pinned here, and every file against engine.json, before Triton starts."""
    version_dir = f"{MODEL_ROOT}/{md.metadata.name}/{VERSION_DIR}"
    args = [
        "pull",
        "--server",
        settings.store_server,
        "--token",
        entry_token(settings, manifest.key),
        "--key",
        manifest.key,
        "--model",
        manifest.model_name,
        "--dest",
        version_dir,
    ]
    if manifest_sha256:
        args += ["--manifest-sha256", manifest_sha256]
    pull = {
        "name": PULL_CONTAINER,
        "image": settings.builder_image,
        "command": ["modelops-build"],
        "args": args,
        "env": [{"name": "HOME", "value": "/tmp"}],  # noqa: S108
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "engine", "mountPath": version_dir},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        ],
    }
    mount = {"name": "engine", "mountPath": version_dir, "readOnly": True}
    return {"name": "engine", "emptyDir": {}}, mount, [pull]


def restricted_api_args(admin_key: str) -> list[str]:
    """--http-restricted-api and --grpc-restricted-protocol: RESTRICTED_APIS need ADMIN_HEADER
    set to `admin_key` ("" without a transfer key: a renderer called without settings)."""
    if not admin_key:
        return []
    rule = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}={admin_key}"
    return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]


def triton_args(admin_key: str) -> list[str]:
    """tritonserver's command line: explicit ports, metrics with summary latencies, the admin
    APIs behind the ModelDeployment's admin key."""
    return [
        f"--model-repository={MODEL_ROOT}",
        "--model-control-mode=none",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--allow-metrics=true",
        "--metrics-config=summary_latencies=true",
        f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
        *restricted_api_args(admin_key),
    ]


def triton_lifecycle(drain_seconds: int) -> dict[str, Any]:
    """preStop: stay serving until every node has dropped the pod from the Service's endpoints
    (Triton refuses new connections from its first SIGTERM on, and endpoints lag)."""
    return {"preStop": {"exec": {"command": ["sleep", str(drain_seconds)]}}}


def termination_grace_seconds(drain_seconds: int) -> int:
    """The drain, Triton's exit timeout, and a margin."""
    return drain_seconds + EXIT_TIMEOUT_SECONDS + GRACE_MARGIN_SECONDS


def render_deployment(
    md: ModelDeployment,
    revision: int,
    manifest: EngineManifest,
    settings: Settings,
    replicas: int | None = None,
    *,
    manifest_sha256: str | None = None,
) -> dict[str, Any]:
    """Deployment `<name>-r<N>` running Triton on the engine of `manifest`, whose engine.json
    has the sha256 `manifest_sha256` (the pods refuse any other)."""
    name, spec = md.metadata.name, md.spec
    child = revision_name(name, revision)
    labels = triton_labels(name, revision, manifest.key)
    annotations = {
        ANNOTATION_GENERATION: str(md.metadata.generation),
        ANNOTATION_ENGINE_KEY: manifest.key,
        ANNOTATION_SERVING_HASH: serving_hash(spec, settings),
        ANNOTATION_RETRY: md.metadata.annotations.get(ANNOTATION_RETRY, ""),
        ANNOTATION_MANIFEST_SHA256: manifest_sha256 or "",
    }
    volume, engine_mount, init = _engine_source(md, manifest, settings, manifest_sha256)
    startup_failures = max(1, math.ceil(settings.triton_startup_seconds / STARTUP_PERIOD_SECONDS))
    container: dict[str, Any] = {
        "name": "triton",
        "image": settings.triton_image,
        "command": ["tritonserver"],
        "args": triton_args(triton_admin_key(settings, md.metadata.namespace, name)),
        "env": [{"name": "HOME", "value": "/tmp"}],  # noqa: S108 - root filesystem is read-only
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        # Startup waits for the engine to load (ready), then liveness takes over.
        "startupProbe": _probe("/v2/health/ready", STARTUP_PERIOD_SECONDS, startup_failures),
        "readinessProbe": _probe("/v2/health/ready", READY_PERIOD_SECONDS, READY_FAILURES),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "resources": triton_resources(spec, settings),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            engine_mount,
            {
                "name": "config",
                "mountPath": f"{MODEL_ROOT}/{name}/{CONFIG_KEY}",
                "subPath": CONFIG_KEY,
                "readOnly": True,
            },
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            # The python backend and Triton's shared-memory transport need a writable /dev/shm.
            {"name": "shm", "mountPath": "/dev/shm"},  # noqa: S108
        ],
    }
    if settings.drain_seconds > 0:
        container["lifecycle"] = triton_lifecycle(settings.drain_seconds)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "terminationGracePeriodSeconds": termination_grace_seconds(settings.drain_seconds),
        "containers": [container],
        "volumes": [
            volume,
            {"name": "config", "configMap": {"name": child}},
            tmp_volume(),
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
        ],
        **gpu_scheduling(spec.build.gpu.product if spec.build.gpu else None),
    }
    if init:
        pod_spec["initContainers"] = init
    pod_annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/path": "/metrics",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(md, child, labels, annotations),
        "spec": {
            "replicas": default_replicas(spec) if replicas is None else replicas,
            "revisionHistoryLimit": 1,
            "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "selector": {
                "matchLabels": {LABEL_DEPLOYMENT: label_value(name), LABEL_REVISION: str(revision)}
            },
            "template": {
                "metadata": {"labels": labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }


def render_revision(
    md: ModelDeployment,
    revision: int,
    manifest: EngineManifest,
    settings: Settings,
    replicas: int | None = None,
    *,
    manifest_sha256: str | None = None,
) -> list[dict[str, Any]]:
    """[ConfigMap, Deployment] of revision N (the ConfigMap first: the pods mount it)."""
    return [
        render_configmap(md, revision, manifest, settings),
        render_deployment(
            md, revision, manifest, settings, replicas, manifest_sha256=manifest_sha256
        ),
    ]
