"""What the child caches keep of each object: only the fields the operator reads.

A real API server returns every object with `metadata.managedFields` (one entry per writer,
often larger than the spec) and fully defaulted specs: a Job's pod template with every default
filled in, a pod's spec and a long status. Kept whole, 1,000 ModelDeployments' children cost an
operator more than its memory target; trimmed at insertion, the cache holds what a reconcile
reads and nothing else:

- metadata: identity, labels, annotations (without kubectl's last-applied copy), owners,
  generation and the deletion mark;
- Jobs: `spec.backoffLimit` (decide/jobs.py) and the status; the pod template is never read
  (a write is skipped by the applied-hash annotation, decide/writes.py);
- pods: no spec; the status fields the stuck-pod, readiness and termination-message rules read;
- Services: the selector and ports (decide/routing.py compares them); ConfigMaps: no data
  (their writes are skipped by the applied-hash annotation too);
- Deployments and routes whole: a revision is scaled by copying its spec as it runs
  (decide/replicas.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JsonDict = dict[str, Any]

KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "ownerReferences",
)
DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
# Per kind (plural): the spec fields kept (None: the whole spec), and whether `data` is kept.
KEPT_SPEC: dict[str, tuple[str, ...] | None] = {
    "jobs": ("backoffLimit",),
    "pods": (),
    "services": ("selector", "ports"),
    "configmaps": (),
}
KEPT_POD_STATUS = (
    "phase",
    "reason",
    "message",
    "podIP",
    "startTime",
    "conditions",
    "containerStatuses",
    "initContainerStatuses",
)
KEPT_CONTAINER_STATUS = ("name", "ready", "started", "restartCount", "state", "lastState")


def _metadata(meta: Mapping[str, Any]) -> JsonDict:
    out = {key: meta[key] for key in KEPT_METADATA if key in meta}
    annotations = out.get("annotations")
    if annotations and any(key in annotations for key in DROPPED_ANNOTATIONS):
        out["annotations"] = {k: v for k, v in annotations.items() if k not in DROPPED_ANNOTATIONS}
    return out


def _pod_status(status: Mapping[str, Any]) -> JsonDict:
    out = {key: status[key] for key in KEPT_POD_STATUS if key in status}
    for key in ("containerStatuses", "initContainerStatuses"):
        if key in out:
            out[key] = [{k: c[k] for k in KEPT_CONTAINER_STATUS if k in c} for c in out[key] or []]
    return out


def trim(plural: str, obj: Mapping[str, Any]) -> JsonDict:
    """A copy of `obj` (of kind `plural`) with only what the operator reads."""
    out: JsonDict = {key: obj[key] for key in ("apiVersion", "kind") if key in obj}
    out["metadata"] = _metadata(obj.get("metadata") or {})
    kept = KEPT_SPEC.get(plural)
    spec = obj.get("spec")
    if isinstance(spec, Mapping):
        out["spec"] = dict(spec) if kept is None else {k: spec[k] for k in kept if k in spec}
        if not out["spec"] and plural in ("pods", "configmaps"):
            del out["spec"]
    status = obj.get("status")
    if isinstance(status, Mapping):
        out["status"] = _pod_status(status) if plural == "pods" else status
    if plural != "configmaps":
        for key in ("data", "binaryData"):
            if key in obj:
                out[key] = obj[key]
    return out
