"""PURE: the source Job, the one step that runs in the tenant's namespace for an engine.

It runs `modelops-build stage` with the tenant's allow-listed credentials (and the tenant's
pvc:// claim), fetches the model and streams it to the engine server, which answers with a
receipt only when the bytes have the spec's sha256. It mounts nothing of the store and holds no
store credential: its only token lets it send this one source for this one ModelDeployment.
With `keep` the server stores the bytes for the build Job; without it (a store hit) the receipt
only proves that this ModelDeployment can read the source.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from modelops_contract.credentials import SOURCE_CREDENTIAL_ENV, dataset_credential_env
from modelops_contract.staging import STAGE_COMMAND, StageDataSet, StageRequest

from ..api import ModelDeployment
from ..settings import Settings
from .build_request import build_datasets
from .common import (
    ANNOTATION_ENGINE_KEY,
    ANNOTATION_GENERATION,
    ANNOTATION_RETRY,
    ANNOTATION_STAGING,
    LABEL_BUILD_FOR,
    LABEL_COMPONENT,
    LABEL_ENGINE_KEY,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    PVC_ROOT,
    SOURCE_APP,
    builder_container,
    engine_label,
    object_meta,
    owner_labels,
    pod_security_context,
    tmp_volume,
)
from .names import label_value, source_job_name
from .tokens import source_put_token

ANNOTATION_KEEP = "modelops.dev/keep"
# A source Job's token outlives the Job's longest wait and run by this much.
TOKEN_SLACK_SECONDS = 600
TOKEN_ROUNDING_SECONDS = 600
RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def credential_env(secret: str | None) -> list[dict[str, Any]]:
    """A user's credentialsSecret, allow-listed keys only, under MODELOPS_SOURCE_* names.

    A key the Secret lacks is skipped (optional), and no other key can reach the builder, so a
    tenant's Secret can neither set the builder's own variables nor any store client's AWS_*.
    """
    if not secret:
        return []
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
        for key, env in SOURCE_CREDENTIAL_ENV.items()
    ]


def source_claim(uri: str) -> str | None:
    """The claim of a pvc://CLAIM/PATH source, else None."""
    if not uri.startswith("pvc://"):
        return None
    return urlsplit(uri).netloc or None


def token_expiry(now: datetime, settings: Settings) -> int:
    """When a source Job's token expires (Unix seconds): after the longest a source Job may wait
    and run, rounded up to 10 minutes (so renders within one window agree)."""
    lifetime = settings.stuck_seconds + settings.build_deadline_seconds + TOKEN_SLACK_SECONDS
    return -(-int(now.timestamp() + lifetime) // TOKEN_ROUNDING_SECONDS) * TOKEN_ROUNDING_SECONDS


def stage_request(
    md: ModelDeployment, settings: Settings, *, keep: bool, now: datetime
) -> StageRequest:
    """What the source Job does: fetch spec.model.source, send it for this ModelDeployment (for
    a build also the data sets it reads: calibration, labelled set), each with a token for
    exactly that (kept or not, its size limit, its namespace, until it expires)."""
    source = md.spec.model.source
    unsigned = StageRequest(
        source_uri=source.uri,
        sha256=source.sha256,
        server=settings.store_server,
        owner=md.metadata.uid or "",
        namespace=md.metadata.namespace or "default",
        expires=token_expiry(now, settings),
        token="",
        keep=keep,
    )
    datasets = []
    for data in build_datasets(md.spec) if keep else []:
        unsigned_set = StageDataSet(source_uri=data.uri, sha256=data.sha256, token="")
        terms = unsigned.model_copy(
            update={"sha256": data.sha256, "max_download_bytes": unsigned_set.max_download_bytes}
        )
        token = source_put_token(settings, terms)
        datasets.append(unsigned_set.model_copy(update={"token": token}))
    token = source_put_token(settings, unsigned)
    return unsigned.model_copy(update={"token": token, "datasets": datasets})


def dataset_env(md: ModelDeployment, keep: bool) -> list[dict[str, Any]]:
    """Each data set's credentialsSecret under its own MODELOPS_DATA<n>_* names."""
    env = []
    for index, data in enumerate(build_datasets(md.spec) if keep else []):
        if data.credentials_secret:
            env += [
                {
                    "name": name,
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": data.credentials_secret,
                            "key": key,
                            "optional": True,
                        }
                    },
                }
                for key, name in dataset_credential_env(index).items()
            ]
    return env


def render_source_job(
    md: ModelDeployment,
    key: str,
    settings: Settings,
    *,
    keep: bool,
    now: datetime,
    staging: int = 0,
) -> dict[str, Any]:
    """Job `<name>-source-<digest>` in the ModelDeployment's namespace (its token expires a
    deadline after `now`); `staging` counts the stagings of this source before (the engine
    server lost the earlier ones)."""
    name = md.metadata.name
    request = stage_request(md, settings, keep=keep, now=now)
    labels = {
        LABEL_NAME: SOURCE_APP,
        LABEL_COMPONENT: "source",
        **owner_labels(name),
        LABEL_ENGINE_KEY: engine_label(key),
    }
    annotations = {
        ANNOTATION_ENGINE_KEY: key,
        ANNOTATION_GENERATION: str(md.metadata.generation),
        ANNOTATION_RETRY: md.metadata.annotations.get(ANNOTATION_RETRY, ""),
        ANNOTATION_KEEP: str(keep).lower(),
        ANNOTATION_STAGING: str(staging),
    }
    pod_labels = {
        LABEL_NAME: SOURCE_APP,
        LABEL_COMPONENT: "source",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_BUILD_FOR: label_value(name),
    }
    volumes: list[dict[str, Any]] = [tmp_volume(size_limit="64Mi")]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    uris = [md.spec.model.source.uri, *(d.uri for d in (build_datasets(md.spec) if keep else []))]
    claims = list(dict.fromkeys(c for c in map(source_claim, uris) if c))
    for index, claim in enumerate(claims):
        volume = "source" if index == 0 else f"source-{index}"
        volumes.append(
            {"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": volume, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
    container = builder_container(
        "source",
        settings.builder_image,
        [STAGE_COMMAND, "--request", request.model_dump_json(by_alias=True)],
        env=credential_env(md.spec.model.source.credentials_secret) + dataset_env(md, keep),
        mounts=mounts,
        resources=RESOURCES,
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(md, source_job_name(name, key), labels, annotations),
        "spec": {
            "backoffLimit": settings.build_backoff_limit,
            "activeDeadlineSeconds": settings.build_deadline_seconds,
            "template": {
                "metadata": {"labels": dict(sorted(pod_labels.items()))},
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
