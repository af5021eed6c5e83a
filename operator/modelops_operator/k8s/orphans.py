"""Build Jobs whose ModelDeployment is gone. They run in the operator's namespace, where no
ownerReference can name a ModelDeployment of another namespace, so garbage collection never
takes them: the operator deletes them itself (when it sees the deletion, and in a periodic
sweep for deletions it missed), and ttlSecondsAfterFinished takes the finished ones anyway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ..render.common import (
    ANNOTATION_OWNER_NAME,
    ANNOTATION_OWNER_UID,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_OWNER_NAMESPACE,
    MANAGED_BY,
    owner_labels,
)
from .client import KubeClient
from .resources import JOBS, MODELDEPLOYMENTS

logger = logging.getLogger(__name__)

BUILD_SELECTOR = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: "build"}


def owner_of(job: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(namespace, name, uid) a build Job was made for, or None when it names none."""
    meta = job.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    namespace = labels.get(LABEL_OWNER_NAMESPACE)
    name, uid = annotations.get(ANNOTATION_OWNER_NAME), annotations.get(ANNOTATION_OWNER_UID)
    return (namespace, name, uid) if namespace and name and uid else None


async def delete_build_jobs(
    client: KubeClient, build_namespace: str, namespace: str, name: str
) -> list[str]:
    """Delete the build Jobs of one ModelDeployment (its deletion was seen)."""
    labels = {**owner_labels(name), LABEL_OWNER_NAMESPACE: namespace}
    deleted = []
    for job in await client.list(JOBS, build_namespace, labels):
        owner = owner_of(job)
        if owner is not None and owner[:2] == (namespace, name):
            child = job["metadata"]["name"]
            if await client.delete(JOBS, build_namespace, child):
                deleted.append(f"Job/{child}")
    return deleted


async def sweep_build_jobs(client: KubeClient, build_namespace: str) -> list[str]:
    """Delete the build Jobs whose owner (namespace, name and uid) no longer exists."""
    deleted = []
    for job in await client.list(JOBS, build_namespace, BUILD_SELECTOR):
        owner = owner_of(job)
        if owner is None:
            continue  # not one of ours: labels are only a filter
        namespace, name, uid = owner
        found = await client.get_or_none(MODELDEPLOYMENTS, namespace, name)
        if found is not None and (found.get("metadata") or {}).get("uid") == uid:
            continue
        child = job["metadata"]["name"]
        if await client.delete(JOBS, build_namespace, child):
            logger.info(
                "deleted build Job %s: its ModelDeployment %s/%s is gone", child, *owner[:2]
            )
            deleted.append(f"Job/{child}")
    return deleted


async def sweep_forever(client: KubeClient, build_namespace: str, interval: float) -> None:
    """sweep_build_jobs every `interval` seconds until cancelled; failures wait for the next."""
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_build_jobs(client, build_namespace)
        except Exception as exc:  # the next sweep tries again; the TTL is the backstop
            logger.warning("build Job sweep failed: %s", exc)
