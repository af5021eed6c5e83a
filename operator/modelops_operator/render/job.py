"""The build Job of one engine key, and the one mapping from a spec to a BuildRequest."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from modelops_contract.credentials import SOURCE_CREDENTIAL_ENV
from modelops_contract.enums import EngineKind, ServingBackend
from modelops_contract.request import BuildRequest, TensorSig
from modelops_contract.scratch import scratch_quantity
from modelops_contract.shapes import ShapeRange

from ..api import ModelDeployment, ModelDeploymentSpec, TensorSpec
from ..settings import Settings
from .common import (
    ANNOTATION_ENGINE_KEY,
    ANNOTATION_GENERATION,
    ANNOTATION_RETRY,
    BUILDER_APP,
    LABEL_BUILD_FOR,
    LABEL_COMPONENT,
    LABEL_ENGINE_KEY,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    container_security_context,
    engine_label,
    gpu_scheduling,
    object_meta,
    owner_labels,
    pod_security_context,
    tmp_volume,
)
from .names import build_job_name, label_value

MODEL_NAME = "model"
BUILDER_COMMAND = ["modelops-build"]
PVC_ROOT = "/mnt/pvc"  # the builder's MODELOPS_PVC_ROOT default
# modelops_builder.tensorrt_versions.EXPECTED_VERSION_ENV (not imported: that module is the
# builder's, the operator imports only the light contract modules).
EXPECTED_TENSORRT_ENV = "MODELOPS_EXPECTED_TENSORRT_VERSION"
BUILDER_RESOURCES: dict[str, dict[str, Any]] = {
    "requests": {"cpu": "1", "memory": "2Gi"},
    "limits": {"memory": "16Gi"},
}


def tensor_sigs(tensors: list[TensorSpec] | None) -> list[TensorSig] | None:
    """The spec's tensors as the builder's signature entries (None when the spec names none)."""
    if not tensors:
        return None
    return [TensorSig(name=t.name, data_type=t.data_type, dims=list(t.dims)) for t in tensors]


def store_location(settings: Settings) -> str:
    """Where the builder publishes: the s3:// prefix, or the store PVC's mount path."""
    return settings.store_uri or settings.store_mount_path


def store_backend(engine: EngineKind, settings: Settings) -> ServingBackend | None:
    """Backend of the store's ready-to-serve copy: python needs model.py beside the graph."""
    if engine == EngineKind.ONNXRUNTIME and settings.onnx_serving_backend == "python":
        return ServingBackend.PYTHON
    return None


def build_request(
    spec: ModelDeploymentSpec,
    settings: Settings,
    *,
    engine_key: str | None,
    source_uri: str | None = None,
    store: str | None = None,
    model_name: str = MODEL_NAME,
    engine: EngineKind | None = None,
) -> BuildRequest:
    """The one mapping from a spec to a BuildRequest (the build Job's, and `modelops dev`'s).

    In a cluster the model name is fixed because store entries are shared by every
    ModelDeployment with the same key; the dev loop overrides source, store, name and engine.
    """
    accuracy = spec.build.accuracy
    engine = engine or spec.build.engine
    return BuildRequest(
        source_uri=source_uri or spec.model.source.uri,
        sha256=spec.model.source.sha256,
        format=spec.model.format,
        inputs=tensor_sigs(spec.model.inputs),
        outputs=tensor_sigs(spec.model.outputs),
        engine=engine,
        precision=spec.build.precision,
        max_batch_size=spec.build.max_batch_size,
        opt_batch_size=spec.build.opt_batch_size,
        shapes=[ShapeRange.model_validate(s.to_wire()) for s in spec.build.shapes]
        if spec.build.shapes
        else None,
        gpu_product=spec.build.gpu.product if spec.build.gpu else None,
        atol=accuracy.atol if accuracy else None,
        rtol=accuracy.rtol if accuracy else None,
        store=store or store_location(settings),
        store_name=None if store else settings.store_name,
        engine_key=engine_key,
        model_name=model_name,
        serving_backend=store_backend(engine, settings),
    )


def _source_claim(uri: str) -> str | None:
    if not uri.startswith("pvc://"):
        return None
    return urlsplit(uri).netloc or None


def _env_from(settings: Settings) -> list[dict[str, Any]]:
    # Only the store's own Secret is injected whole; the user's Secret never is (source_env).
    if settings.store_uri and settings.store_secret:
        return [{"secretRef": {"name": settings.store_secret}}]
    return []


def source_env(md: ModelDeployment) -> list[dict[str, Any]]:
    """spec.model.source's credentialsSecret as credential_env gives it."""
    return credential_env(md.spec.model.source.credentials_secret)


def credential_env(secret: str | None) -> list[dict[str, Any]]:
    """A user's credentialsSecret, allow-listed keys only, under MODELOPS_SOURCE_* names.

    A key the Secret lacks is skipped (optional), and no other key can reach the builder, so a
    tenant's Secret can neither set the builder's own variables nor the store client's AWS_*.
    """
    if not secret:
        return []
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for key, env in SOURCE_CREDENTIAL_ENV.items()
    ]


def _volumes(md: ModelDeployment, settings: Settings) -> tuple[list[Any], list[Any]]:
    volumes: list[dict[str, Any]] = [tmp_volume(size_limit=_scratch())]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    if not settings.store_uri and settings.store_pvc:
        volumes.append(
            {"name": "store", "persistentVolumeClaim": {"claimName": settings.store_pvc}}
        )
        mounts.append({"name": "store", "mountPath": settings.store_mount_path})
    claim = _source_claim(md.spec.model.source.uri)
    if claim:
        volumes.append(
            {"name": "source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "source", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
    return volumes, mounts


def _scratch() -> str:
    """The build's /tmp: room for two copies of the largest model a build may download."""
    return scratch_quantity(BuildRequest.model_fields["max_download_bytes"].default)


def _resources(md: ModelDeployment) -> dict[str, Any]:
    resources = {k: dict(v) for k, v in BUILDER_RESOURCES.items()}
    # The kubelet evicts the Job before its scratch space can fill the node's disk.
    resources["requests"]["ephemeral-storage"] = _scratch()
    resources["limits"]["ephemeral-storage"] = _scratch()
    if str(md.spec.build.engine) == "tensorrt":
        resources["limits"]["nvidia.com/gpu"] = 1
    return resources


def render_build_job(md: ModelDeployment, key: str, settings: Settings) -> dict[str, Any]:
    """The Job that builds and publishes the engine `key` for this ModelDeployment."""
    name = md.metadata.name
    request = build_request(md.spec, settings, engine_key=key)
    labels = {
        LABEL_NAME: BUILDER_APP,
        LABEL_COMPONENT: "build",
        **owner_labels(name),
        LABEL_ENGINE_KEY: engine_label(key),
    }
    annotations = {
        ANNOTATION_ENGINE_KEY: key,
        ANNOTATION_GENERATION: str(md.metadata.generation),
        ANNOTATION_RETRY: md.metadata.annotations.get(ANNOTATION_RETRY, ""),
    }
    pod_labels = {
        LABEL_NAME: BUILDER_APP,
        LABEL_COMPONENT: "build",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_BUILD_FOR: label_value(name),
        LABEL_ENGINE_KEY: engine_label(key),
    }
    volumes, mounts = _volumes(md, settings)
    env = [
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - the only writable place
        {"name": "MODELOPS_PVC_ROOT", "value": PVC_ROOT},
        *source_env(md),
    ]
    if str(md.spec.build.engine) == "tensorrt":
        # The builder refuses to build with any other TensorRT: Triton could not load the plan.
        env.append({"name": EXPECTED_TENSORRT_ENV, "value": settings.tensorrt_version})
    container: dict[str, Any] = {
        "name": "builder",
        "image": settings.builder_image,
        "command": list(BUILDER_COMMAND),
        "args": ["--request", request.model_dump_json(by_alias=True, exclude_none=True)],
        "env": env,
        "resources": _resources(md),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
    env_from = _env_from(settings)
    if env_from:
        container["envFrom"] = env_from
    gpu = md.spec.build.gpu.product if md.spec.build.gpu else None
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(fs_group=not settings.store_uri),
        "containers": [container],
        "volumes": volumes,
        **gpu_scheduling(gpu),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(md, build_job_name(name, key), labels, annotations),
        "spec": {
            "backoffLimit": settings.build_backoff_limit,
            "activeDeadlineSeconds": settings.build_deadline_seconds,
            # ttlSecondsAfterFinished stays unset: the operator reads the result and deletes
            # the Job itself once the engine is no longer wanted.
            "template": {
                "metadata": {"labels": dict(sorted(pod_labels.items()))},
                "spec": pod_spec,
            },
        },
    }
