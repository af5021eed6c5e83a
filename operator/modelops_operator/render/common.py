"""Labels, annotations, owner references and the restricted security context of every child."""

from __future__ import annotations

from typing import Any

from modelops_contract.key import key_digest

from ..api import API_VERSION, KIND, ModelDeployment
from .names import label_value

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_DEPLOYMENT = "modelops.dev/deployment"
LABEL_REVISION = "modelops.dev/revision"
LABEL_ENGINE_KEY = "modelops.dev/engine-key"
# Build pods carry this instead of LABEL_DEPLOYMENT so that neither the Service nor the /scale
# selector ever counts a builder pod as a serving replica.
LABEL_BUILD_FOR = "modelops.dev/build-for"
# Build Jobs live in the operator's namespace, where no ownerReference can point at a
# ModelDeployment: these name their owner instead (docs/security.md, "Build Jobs").
LABEL_OWNER_NAMESPACE = "modelops.dev/owner-namespace"
ANNOTATION_OWNER_UID = "modelops.dev/owner-uid"
ANNOTATION_OWNER_NAME = "modelops.dev/owner-name"

ANNOTATION_GENERATION = "modelops.dev/generation"
ANNOTATION_ENGINE_KEY = "modelops.dev/engine-key"
ANNOTATION_SERVING_HASH = "modelops.dev/serving-hash"
ANNOTATION_RETRY = "modelops.dev/retry"
# Which staging of the source a source Job makes, and a build Job reads (0: the first; one more
# each time the engine server lost a staged source: decide/restage.py).
ANNOTATION_STAGING = "modelops.dev/staging"
ANNOTATION_ROLLBACK_TO = "modelops.dev/rollback-to"
# Steering a candidate (`kubectl modelops`): each names the revision it applies to, so a value
# left behind never steers a later rollout (decide/steering.py).
ANNOTATION_PROMOTE = "modelops.dev/promote"
ANNOTATION_ABORT = "modelops.dev/abort"
ANNOTATION_PAUSE = "modelops.dev/pause"
ANNOTATION_WEIGHT = "modelops.dev/weight"
# The sha256 of the engine.json a revision's pods are pinned to (the operator verified it).
ANNOTATION_MANIFEST_SHA256 = "modelops.dev/manifest-sha256"

MANAGED_BY = "modelops"
TRITON_APP = "triton"
ROUTER_APP = "modelops-router"
BUILDER_APP = "modelops-builder"
VALIDATOR_APP = "modelops-validator"
SOURCE_APP = "modelops-source"
ENGINE_LABEL_CHARS = 40

# Non-root uid/gid of the NGC tritonserver image's `triton-server` user; the builder image uses
# the same ids so that files it publishes in the store are readable by Triton.
RUN_AS_USER = 1000
RUN_AS_GROUP = 1000


def engine_label(key: str) -> str:
    """The engine key as a label value: the first 40 hex digits (labels cap at 63)."""
    return key_digest(key)[:ENGINE_LABEL_CHARS]


def owner_labels(md_name: str) -> dict[str, str]:
    """Labels the k8s layer selects a ModelDeployment's Jobs, Deployments and ConfigMaps by."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_DEPLOYMENT: label_value(md_name)}


def pod_selector(md_name: str) -> str:
    """status.selector: the Triton pods of every revision (never the router's), for /scale."""
    return f"{LABEL_DEPLOYMENT}={label_value(md_name)},{LABEL_NAME}={TRITON_APP}"


def triton_labels(md_name: str, revision: int, key: str) -> dict[str, str]:
    """Labels of a revision's ConfigMap, Deployment and pods."""
    return {
        LABEL_NAME: TRITON_APP,
        LABEL_COMPONENT: "server",
        **owner_labels(md_name),
        LABEL_REVISION: str(revision),
        LABEL_ENGINE_KEY: engine_label(key),
    }


def owner_reference(md: ModelDeployment) -> list[dict[str, Any]]:
    """The controller reference to the ModelDeployment, so Kubernetes collects the children.

    A real API server always sets metadata.uid; without one (an object that was never stored)
    no reference can be valid, so none is written.
    """
    if not md.metadata.uid:
        return []
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": md.metadata.name,
            "uid": md.metadata.uid,
            "controller": True,
            # blockOwnerDeletion would need `update` on modeldeployments/finalizers (the
            # OwnerReferencesPermissionEnforcement admission plugin); background deletion of
            # the children needs no blocking, so the operator keeps the narrower RBAC.
            "blockOwnerDeletion": False,
        }
    ]


def object_meta(
    md: ModelDeployment,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """metadata of a child: name, namespace, labels, annotations and the owner reference."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": md.metadata.namespace,
        "labels": dict(sorted(labels.items())),
    }
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    refs = owner_reference(md)
    if refs:
        meta["ownerReferences"] = refs
    return meta


def pod_security_context(fs_group: bool = False) -> dict[str, Any]:
    """The Pod Security Standards "restricted" pod-level context."""
    context: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_GROUP,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if fs_group:
        # Only pods that write to the store need it; OnRootMismatch avoids a recursive chown of
        # a large store on every mount.
        context["fsGroup"] = RUN_AS_GROUP
        context["fsGroupChangePolicy"] = "OnRootMismatch"
    return context


def container_security_context(read_only_root: bool = True) -> dict[str, Any]:
    """The restricted container context: no privilege escalation, no capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def gpu_scheduling(product: str | None) -> dict[str, Any]:
    """nodeSelector and toleration for pods that must land on a given GPU product."""
    if not product:
        return {}
    return {
        "nodeSelector": {"nvidia.com/gpu.product": product},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }


def tmp_volume(name: str = "tmp", size_limit: str | None = None) -> dict[str, Any]:
    """A scratch emptyDir (the root filesystem is read-only), bounded when `size_limit` is set."""
    return {"name": name, "emptyDir": {"sizeLimit": size_limit} if size_limit else {}}


PVC_ROOT = "/mnt/pvc"  # the builder's MODELOPS_PVC_ROOT default: pvc:// claims are mounted below


def builder_container(
    name: str,
    image: str,
    args: list[str],
    *,
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    resources: dict[str, Any],
) -> dict[str, Any]:
    """A `modelops-build` container of a Job in the tenant's namespace (source, validation):
    HOME on the scratch volume, the restricted context, its error message from the logs."""
    return {
        "name": name,
        "image": image,
        "command": ["modelops-build"],
        "args": args,
        "env": [
            {"name": "HOME", "value": "/tmp"},  # noqa: S108 - the only writable place
            {"name": "MODELOPS_PVC_ROOT", "value": PVC_ROOT},
            *env,
        ],
        "resources": resources,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }
