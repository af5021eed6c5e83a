"""PURE: does a manifest change anything on the object that exists? One answer for the whole
operator, so the decision emits no write that the k8s layer would skip, and vice versa.

"Apply" here is a merge-patch of the parts the operator owns (spec or data, labels,
annotations). The API server adds defaults to what it stores, so a Deployment read back never
equals the manifest that made it: each written object carries the hash of its owned parts in
an annotation, and equal hashes mean nothing to write.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

APPLIED_HASH = "modelops.dev/applied-hash"
APPLIED_FIELDS = ("spec", "data")
APPLIED_METADATA = ("labels", "annotations")

JsonDict = dict[str, Any]


def merged(existing: Mapping[str, Any], patch: Mapping[str, Any]) -> JsonDict:
    """RFC 7386 merge-patch applied to a copy (None deletes a key, lists are replaced)."""
    out = dict(existing)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def apply_patch_of(manifest: Mapping[str, Any]) -> JsonDict:
    """The merge-patch that makes an existing object match the manifest's owned fields."""
    patch: JsonDict = {k: manifest[k] for k in APPLIED_FIELDS if k in manifest}
    meta = manifest.get("metadata") or {}
    owned_meta = {k: meta[k] for k in APPLIED_METADATA if k in meta}
    if owned_meta:
        patch["metadata"] = owned_meta
    return patch


def manifest_hash(manifest: Mapping[str, Any]) -> str:
    """Digest of a manifest's owned fields (what APPLIED_HASH records)."""
    blob = json.dumps(apply_patch_of(manifest), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def with_applied_hash(manifest: Mapping[str, Any]) -> tuple[JsonDict, str]:
    """A copy of the manifest annotated with the hash of its owned fields, and the hash."""
    digest = manifest_hash(manifest)
    meta = dict(manifest.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_HASH: digest}
    return {**manifest, "metadata": meta}, digest


def unchanged(existing: Mapping[str, Any] | None, manifest: Mapping[str, Any]) -> bool:
    """True when writing `manifest` over `existing` would change nothing the operator owns."""
    if existing is None:
        return False
    annotated, digest = with_applied_hash(manifest)
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    if annotations.get(APPLIED_HASH) == digest:
        return True
    return merged(existing, apply_patch_of(annotated)) == existing
