"""PURE: the finalizers earlier versions left on ModelDeployments, and the patch that drops them.

The operator adds no finalizer: every child has an ownerReference, so Kubernetes' garbage
collector removes them, and `kubectl delete md` (or deleting the namespace) completes even with
the operator uninstalled. Earlier versions had `modelops.dev/finalizer` (kopf's finalizer under
our name) and kopf could add its default one; both go on the next reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LEGACY_FINALIZERS = ("modelops.dev/finalizer", "kopf.zalando.org/KopfFinalizerMarker")
# kopf's copy of the last handled spec (earlier versions): large, and read by nobody now.
LEGACY_ANNOTATIONS = ("modelops.dev/last-handled-configuration",)


def legacy_cleanup(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge-patch removing legacy finalizers and annotations, or None when there are none.

    The finalizers list is replaced whole by a merge-patch, so the patch carries the body's
    resourceVersion: a finalizer someone else added meanwhile makes it fail (409), never vanish.
    """
    meta = body.get("metadata") or {}
    finalizers = list(meta.get("finalizers") or [])
    annotations = meta.get("annotations") or {}
    kept = [f for f in finalizers if f not in LEGACY_FINALIZERS]
    stale = [a for a in LEGACY_ANNOTATIONS if a in annotations]
    if kept == finalizers and not stale:
        return None
    patch: dict[str, Any] = {}
    if kept != finalizers:
        patch["finalizers"] = kept
    if stale:
        patch["annotations"] = dict.fromkeys(stale)
    if meta.get("resourceVersion"):
        patch["resourceVersion"] = meta["resourceVersion"]
    return {"metadata": patch}
