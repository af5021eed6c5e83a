"""PURE: which build Jobs in the operator's namespace lost their ModelDeployment.

No ownerReference can name a ModelDeployment of another namespace, so garbage collection never
takes these Jobs; their owner is named by a label (namespace) and annotations (name, uid)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..render.common import (
    ANNOTATION_OWNER_NAME,
    ANNOTATION_OWNER_UID,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_OWNER_NAMESPACE,
    MANAGED_BY,
)

# (namespace, name, uid) of a ModelDeployment
Owner = tuple[str, str, str]


def owner_of(job: Mapping[str, Any]) -> Owner | None:
    """The ModelDeployment a build Job was made for, or None when it is not a build Job of ours."""
    meta = job.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or labels.get(LABEL_COMPONENT) != "build":
        return None
    namespace = labels.get(LABEL_OWNER_NAMESPACE)
    name, uid = annotations.get(ANNOTATION_OWNER_NAME), annotations.get(ANNOTATION_OWNER_UID)
    return (namespace, name, uid) if namespace and name and uid else None


def orphaned(
    jobs: Iterable[Mapping[str, Any]], alive: Callable[[Owner], bool]
) -> list[Mapping[str, Any]]:
    """The build Jobs whose owner (namespace, name and uid: a new object of the same name is
    another owner) is not alive; Jobs that name no owner are never ours to delete."""
    found = []
    for job in jobs:
        owner = owner_of(job)
        if owner is not None and not alive(owner):
            found.append(job)
    return found
