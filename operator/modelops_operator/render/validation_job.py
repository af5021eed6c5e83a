"""PURE: the validation Job of a candidate revision, and the request it runs.

The Job (builder image, no Kubernetes credentials, nothing of the store: it reads the entry's
set from the engine server with the entry's token) sends the entry's validation set, and the
user's own set when spec.validation names one, to every ready candidate pod over gRPC, before
the candidate gets any client request. Its termination message carries the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from modelops_contract.key import key_digest
from modelops_contract.manifest import EngineManifest
from modelops_contract.staging import entry_url
from modelops_contract.validation import (
    VALIDATION_SET_NAME,
    UserValidationSet,
    ValidationRequest,
)

from ..api import ModelDeployment
from ..settings import Settings
from .common import (
    ANNOTATION_ENGINE_KEY,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_REVISION,
    MANAGED_BY,
    PVC_ROOT,
    VALIDATOR_APP,
    builder_container,
    object_meta,
    owner_labels,
    pod_security_context,
    tmp_volume,
)
from .names import validation_job_name
from .source_job import credential_env
from .tokens import entry_token

# Tolerances when the manifest records none (an entry built before they were recorded).
DEFAULT_TOLERANCES = {"fp32": (1e-5, 1e-4), "fp16": (1e-2, 1e-2), "int8": (1e-1, 1e-1)}
RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}


def tolerances(manifest: EngineManifest) -> tuple[float, float]:
    """The build's accuracy tolerances: the validation run holds the served engine to them."""
    atol, rtol = DEFAULT_TOLERANCES.get(str(manifest.precision), DEFAULT_TOLERANCES["fp16"])
    accuracy = manifest.accuracy
    if accuracy is not None:
        atol = accuracy.atol if accuracy.atol is not None else atol
        rtol = accuracy.rtol if accuracy.rtol is not None else rtol
    return atol, rtol


def validation_request(
    md: ModelDeployment, manifest: EngineManifest, targets: Sequence[str], settings: Settings
) -> ValidationRequest:
    """What the Job checks: both sets, every target, the build's tolerances. The entry's set
    comes from the engine server, checked against the sha256 of the verified engine.json."""
    atol, rtol = tolerances(manifest)
    user = md.spec.validation
    listed = manifest.file(VALIDATION_SET_NAME)
    return ValidationRequest(
        model_name=md.metadata.name,
        targets=list(targets),
        reference_set=entry_url(
            settings.store_server, key_digest(manifest.key), VALIDATION_SET_NAME
        ),
        reference_sha256=listed.sha256 if listed is not None else None,
        reference_token=entry_token(settings, manifest.key),
        inputs=[s.name for s in manifest.inputs],
        outputs=[s.name for s in manifest.outputs],
        user_set=None
        if user is None
        else UserValidationSet(
            source_uri=user.source.uri,
            sha256=user.source.sha256,
            min_accuracy=user.min_accuracy,
            min_agreement=user.min_agreement,
        ),
        atol=atol,
        rtol=rtol,
        max_batch_size=manifest.max_batch_size,
    )


def _user_set_access(md: ModelDeployment) -> tuple[list[Any], list[Any], list[Any]]:
    """(volumes, mounts, env) that reach spec.validation's file."""
    user = md.spec.validation
    if user is None:
        return [], [], []
    parts = urlsplit(user.source.uri)
    volumes: list[Any] = []
    mounts: list[Any] = []
    if parts.scheme == "pvc" and parts.netloc:
        claim = parts.netloc
        volumes.append(
            {"name": "user-set", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": "user-set", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
    secret = user.source.credentials_secret
    return volumes, mounts, credential_env(secret)


def render_validation_job(
    md: ModelDeployment,
    revision: int,
    manifest: EngineManifest,
    targets: Sequence[str],
    settings: Settings,
) -> dict[str, Any]:
    """Job `<name>-validate-r<N>`: the entry's set and the user's set fetched, nothing mounted
    of the store."""
    name = md.metadata.name
    request = validation_request(md, manifest, targets, settings)
    labels = {
        LABEL_NAME: VALIDATOR_APP,
        LABEL_COMPONENT: "validate",
        **owner_labels(name),
        LABEL_REVISION: str(revision),
    }
    pod_labels = {
        LABEL_NAME: VALIDATOR_APP,
        LABEL_COMPONENT: "validate",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_REVISION: str(revision),
    }
    volumes, mounts, credentials = _user_set_access(md)
    volumes.append(tmp_volume())
    mounts.append({"name": "tmp", "mountPath": "/tmp"})  # noqa: S108 - the only writable place
    container = builder_container(
        "validate",
        settings.builder_image,
        ["validate", "--request", request.model_dump_json(by_alias=True)],
        env=credentials,
        mounts=mounts,
        resources=RESOURCES,
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(
            md,
            validation_job_name(name, revision),
            labels,
            {ANNOTATION_ENGINE_KEY: manifest.key},
        ),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.validation_deadline_seconds,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
