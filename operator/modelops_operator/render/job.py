"""The build Job of one engine key (the spec -> BuildRequest mapping is `render/build_request.py`).

The build Job runs in the operator's namespace (docs/security.md): its build step reads the
source the source Job sent to the engine server and writes the engine into an emptyDir, with
neither the store nor any credential; its publishing step alone mounts the store (or gets the
s3 store's Secret) and the MAC key, and sees nothing of the user's but that emptyDir: it has its
own /tmp and HOME (the build step can write its /tmp), mounts the output read-only, and runs
Python isolated (`python -I`: no user site, no PYTHON* variables, no current folder on the path),
so nothing the build step wrote is imported or run with the key.
"""

from __future__ import annotations

import re
from typing import Any

from modelops_contract import integrity
from modelops_contract.quantization import StagedSource
from modelops_contract.request import BuildRequest
from modelops_contract.scratch import output_quantity, scratch_quantity
from modelops_contract.staging import staged_source_url

from ..api import ModelDeployment
from ..settings import Settings
from .build_request import build_request, staged_data_set
from .common import (
    ANNOTATION_ENGINE_KEY,
    ANNOTATION_GENERATION,
    ANNOTATION_OWNER_NAME,
    ANNOTATION_OWNER_UID,
    ANNOTATION_RETRY,
    ANNOTATION_STAGING,
    BUILDER_APP,
    LABEL_BUILD_FOR,
    LABEL_COMPONENT,
    LABEL_ENGINE_KEY,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_OWNER_NAMESPACE,
    MANAGED_BY,
    container_security_context,
    engine_label,
    gpu_scheduling,
    owner_labels,
    pod_security_context,
    tmp_volume,
)
from .names import build_job_name, label_value
from .tokens import source_get_token

BUILDER_COMMAND = ["modelops-build"]
# The publishing step: the builder's Python, isolated (the builder image's PATH finds its venv).
PUBLISH_COMMAND = ["python", "-I", "-m", "modelops_builder"]
OUTPUT_DIR = "/var/lib/modelops/output"
CACHE_DIR = "/var/lib/modelops/cache"
ANNOTATION_REPLACES = "modelops.dev/replaces"
# modelops_builder.tensorrt_versions.EXPECTED_VERSION_ENV (not imported: that module is the
# builder's, the operator imports only the light contract modules).
EXPECTED_TENSORRT_ENV = "MODELOPS_EXPECTED_TENSORRT_VERSION"
BUILDER_RESOURCES: dict[str, dict[str, Any]] = {
    "requests": {"cpu": "1", "memory": "2Gi"},
    "limits": {"memory": "16Gi"},
}
PUBLISH_RESOURCES: dict[str, dict[str, Any]] = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def _store_access(settings: Settings) -> tuple[list[Any], list[Any], list[Any]]:
    """(volumes, mounts, envFrom) of the publishing step: the only container with the store."""
    if settings.store_uri:
        # Only the store's own Secret is injected whole, and only into the publishing step.
        env_from = [{"secretRef": {"name": settings.store_secret}}] if settings.store_secret else []
        return [], [], env_from
    volume = {"name": "store", "persistentVolumeClaim": {"claimName": settings.store_pvc}}
    return [volume], [{"name": "store", "mountPath": settings.store_mount_path}], []


def _scratch() -> str:
    """The build's /tmp: room for two copies of the largest model a build may download."""
    return scratch_quantity(BuildRequest.model_fields["max_download_bytes"].default)


def _output() -> str:
    """The build step's output folder: the engine and the validation set."""
    return output_quantity(BuildRequest.model_fields["max_download_bytes"].default)


def _resources(md: ModelDeployment) -> dict[str, Any]:
    resources = {k: dict(v) for k, v in BUILDER_RESOURCES.items()}
    # The kubelet evicts the Job before its scratch space can fill the node.
    storage = f"{int(_scratch().removesuffix('Gi')) + int(_output().removesuffix('Gi'))}Gi"
    resources["requests"]["ephemeral-storage"] = storage
    resources["limits"]["ephemeral-storage"] = storage
    if str(md.spec.build.engine) == "tensorrt":
        resources["limits"]["nvidia.com/gpu"] = 1
    return resources


def staged_build_request(md: ModelDeployment, key: str, settings: Settings) -> BuildRequest:
    """The build Job's request: the bytes come from the engine server, sent by the source Job."""
    sha = md.spec.model.source.sha256
    request = build_request(md.spec, settings, engine_key=key)
    owner = md.metadata.uid or ""
    staged = StagedSource(
        url=staged_source_url(settings.store_server, sha, owner),
        token=source_get_token(settings, sha, owner),
    )
    update: dict[str, Any] = {
        "staged_source": staged,
        "timing_cache": timing_cache_name(md, settings),
        "labelled_set": staged_data_set(settings, request.labelled_set, owner),
    }
    if request.calibration is not None:
        data = staged_data_set(settings, request.calibration.data, owner)
        update["calibration"] = request.calibration.model_copy(update={"data": data})
    return request.model_copy(update=update)


def build_job_labels(md: ModelDeployment, key: str) -> dict[str, str]:
    """The labels the operator finds its build Jobs by, in its own namespace."""
    return {
        LABEL_NAME: BUILDER_APP,
        LABEL_COMPONENT: "build",
        **owner_labels(md.metadata.name),
        LABEL_OWNER_NAMESPACE: md.metadata.namespace or "default",
        LABEL_ENGINE_KEY: engine_label(key),
    }


def timing_cache_name(md: ModelDeployment, settings: Settings) -> str | None:
    """The store-level name of this tenant's TensorRT timing cache for the spec's GPU and the
    chart's TensorRT (None: no TensorRT, or an s3 store, which keeps no cache)."""
    if str(md.spec.build.engine) != "tensorrt" or settings.store_uri:
        return None
    product = md.spec.build.gpu.product if md.spec.build.gpu else "gpu"
    gpu = re.sub(r"[^A-Za-z0-9_.-]+", "_", product)
    namespace = md.metadata.namespace or "default"
    return f"_timing_cache/{namespace}/{gpu}-trt{settings.tensorrt_version}.cache"


def _timing_cache_step(request: BuildRequest, settings: Settings) -> list[dict[str, Any]]:
    """TensorRT: copy the tenant's sealed timing cache (store read-only, checked with the MAC
    key, nothing of the user's run yet) for the build step."""
    if request.timing_cache is None:
        return []
    request_json = request.model_dump_json(by_alias=True, exclude_none=True)
    return [
        {
            "name": "timing-cache",
            "image": settings.builder_image,
            "command": list(PUBLISH_COMMAND),
            "args": ["timing-cache", "--request", request_json, "--into", CACHE_DIR],
            # No writable /tmp or HOME: it reads the store and writes the cache folder only.
            "env": [_mac_key_env(settings)],
            "securityContext": container_security_context(),
            "volumeMounts": [
                {"name": "store", "mountPath": settings.store_mount_path, "readOnly": True},
                {"name": "cache", "mountPath": CACHE_DIR},
            ],
        }
    ]


def _mac_key_env(settings: Settings) -> dict[str, Any]:
    return {
        "name": integrity.MAC_KEY_ENV,
        "valueFrom": {
            "secretKeyRef": {"name": settings.store_key_secret, "key": integrity.SECRET_MAC_KEY}
        },
    }


def render_build_job(
    md: ModelDeployment,
    key: str,
    settings: Settings,
    *,
    replaces: str | None = None,
    staging: int = 0,
) -> dict[str, Any]:
    """The Job that builds and publishes engine `key` for this ModelDeployment, in the
    operator's namespace: a build step that never sees the store, then the publishing step.

    `replaces`: the sha256 of a refused entry at this key that the publish replaces; `staging`:
    which staging of the source it reads (its source Job's)."""
    request = staged_build_request(md, key, settings)
    request_json = request.model_dump_json(by_alias=True, exclude_none=True)
    annotations = {
        ANNOTATION_ENGINE_KEY: key,
        ANNOTATION_GENERATION: str(md.metadata.generation),
        ANNOTATION_RETRY: md.metadata.annotations.get(ANNOTATION_RETRY, ""),
        ANNOTATION_OWNER_UID: md.metadata.uid or "",
        ANNOTATION_OWNER_NAME: md.metadata.name,
        ANNOTATION_STAGING: str(staging),
    }
    if replaces:
        annotations[ANNOTATION_REPLACES] = replaces
    pod_labels = {
        LABEL_NAME: BUILDER_APP,
        LABEL_COMPONENT: "build",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_BUILD_FOR: label_value(md.metadata.name),
        LABEL_OWNER_NAMESPACE: md.metadata.namespace or "default",
        LABEL_ENGINE_KEY: engine_label(key),
    }
    store_volumes, store_mounts, env_from = _store_access(settings)
    tensorrt = str(md.spec.build.engine) == "tensorrt"
    build_args = ["--request", request_json, "--into", OUTPUT_DIR]
    env = [{"name": "HOME", "value": "/tmp"}]  # noqa: S108 - the only writable place
    build_mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
        {"name": "output", "mountPath": OUTPUT_DIR},
    ]
    volumes: list[dict[str, Any]] = [
        tmp_volume(size_limit=_scratch()),
        {"name": "output", "emptyDir": {"sizeLimit": _output()}},
        # The publishing step's own /tmp (an s3 store stages the entry there): never the build
        # step's.
        {"name": "publish-tmp", "emptyDir": {"sizeLimit": _output()}},
        *store_volumes,
    ]
    init = _timing_cache_step(request, settings)
    if tensorrt:
        # The builder refuses to build with any other TensorRT: Triton could not load the plan.
        env.append({"name": EXPECTED_TENSORRT_ENV, "value": settings.tensorrt_version})
        volumes.append({"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}})
        build_mounts.append({"name": "cache", "mountPath": CACHE_DIR, "readOnly": True})
        if init:
            build_args += ["--timing-cache", CACHE_DIR]
    build = {
        "name": "build",
        "image": settings.builder_image,
        "command": list(BUILDER_COMMAND),
        "args": build_args,
        "env": env,
        "resources": _resources(md),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": build_mounts,
    }
    publish: dict[str, Any] = {
        "name": "publish",
        "image": settings.builder_image,
        "command": list(PUBLISH_COMMAND),
        "args": ["publish", "--request", request_json, "--from", OUTPUT_DIR],
        "env": [
            {"name": "HOME", "value": "/tmp"},  # noqa: S108
            _mac_key_env(settings),
        ],
        "resources": PUBLISH_RESOURCES,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "publish-tmp", "mountPath": "/tmp"},  # noqa: S108
            {"name": "output", "mountPath": OUTPUT_DIR, "readOnly": True},
            *store_mounts,
        ],
    }
    if env_from:
        publish["envFrom"] = env_from
    gpu = md.spec.build.gpu.product if md.spec.build.gpu else None
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(fs_group=not settings.store_uri),
        "initContainers": [*init, build],
        "containers": [publish],
        "volumes": volumes,
        **gpu_scheduling(gpu),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": build_job_name(md.metadata.namespace or "default", md.metadata.name, key),
            "namespace": settings.operator_namespace,
            "labels": dict(sorted(build_job_labels(md, key).items())),
            "annotations": dict(sorted(annotations.items())),
        },
        "spec": {
            "backoffLimit": settings.build_backoff_limit,
            "activeDeadlineSeconds": settings.build_deadline_seconds,
            # No ownerReference can cross namespaces: the operator deletes the Job when its
            # owner is gone, and the TTL collects it once finished in any case.
            "ttlSecondsAfterFinished": settings.build_ttl_seconds,
            "template": {
                "metadata": {"labels": dict(sorted(pod_labels.items()))},
                "spec": pod_spec,
            },
        },
    }
