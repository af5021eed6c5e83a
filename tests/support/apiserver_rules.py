"""What a real API server does to an object on each write, as pure functions the emulator
(tests/support/apiserver.py) calls: label selectors (equality- and set-based), which kinds have
a generation and a status subresource, what a write to the main resource or to /status keeps,
fields that never change after create, and when the server fills in its defaults.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support.server_shapes import DEFAULTS

Obj = dict[str, Any]

# Kinds whose metadata.generation counts spec changes (and whose controllers write
# status.observedGeneration).
GENERATION = frozenset({"modeldeployments", "deployments", "jobs", "httproutes", "grpcroutes"})
# Kinds with a status subresource: a write to the object ignores `status`, a write to /status
# ignores everything but `status` (built-in kinds and CRDs with subresources.status).
STATUS = frozenset(
    {"modeldeployments", "deployments", "jobs", "pods", "services", "httproutes", "grpcroutes"}
)
# Review kinds are answered and never stored, so a create needs no metadata.name
# (authorization.k8s.io and authentication.k8s.io reviews).
NOT_STORED = frozenset(
    {
        "subjectaccessreviews",
        "localsubjectaccessreviews",
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "tokenreviews",
    }
)
CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "modeldeployments.modelops.dev.yaml"


def _crd_scale() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The ModelDeployment CRD's scale subresource paths, as the API server reads them."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    scale = crd["spec"]["versions"][0]["subresources"]["scale"]
    return tuple(
        tuple(scale[name].lstrip(".").split("."))
        for name in ("specReplicasPath", "statusReplicasPath", "labelSelectorPath")
    )  # type: ignore[return-value]


# The scale subresource: replicas in the spec, replicas in the status, the pods' selector.
SCALE = {
    "modeldeployments": _crd_scale(),
    "deployments": (("spec", "replicas"), ("status", "replicas"), ()),
}
# Fields no update may change (422 Invalid, "field is immutable").
IMMUTABLE = {
    "jobs": (("spec", "selector"), ("spec", "template"), ("spec", "completionMode")),
    "deployments": (("spec", "selector"),),
    "services": (("spec", "clusterIP"),),
}
_TERM = re.compile(
    r"^\s*(?P<not>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _terms(selector: str) -> list[str]:
    """Split on the commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """A labelSelector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`;
    a term the server cannot parse raises ValueError (the server answers 400)."""
    for term in _terms(selector):
        match = _TERM.match(term)
        if match is None or (match["not"] and (match["op"] or match["set"])):
            raise ValueError(f"unable to parse requirement: {term!r}")
        key, present = match["key"], match["key"] in labels
        if match["not"]:
            ok = not present
        elif match["op"] in ("=", "=="):
            ok = labels.get(key) == match["value"]
        elif match["op"] == "!=":
            ok = labels.get(key) != match["value"]
        elif match["set"]:
            values = {v.strip() for v in match["values"].split(",") if v.strip()}
            ok = (
                labels.get(key) in values if match["set"] == "in" else labels.get(key) not in values
            )
        else:
            ok = present
        if not ok:
            return False
    return True


def get_path(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at a path of keys, or None."""
    node: Any = obj
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def set_path(obj: Obj, path: tuple[str, ...], value: Any) -> None:
    """Set the value at a path of keys, making the dicts on the way."""
    node = obj
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 merge-patch: None deletes a key, objects merge, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def kept_by_write(plural: str, current: Obj, written: Obj, subresource: str | None) -> Obj:
    """What a write stores: /status keeps everything but status from `current`; a write to the
    object keeps `current`'s status where the kind has a status subresource."""
    if plural in STATUS and subresource == "status":
        return {**current, "status": copy.deepcopy(written.get("status") or {})}
    if plural in STATUS and "status" in current:
        return {**written, "status": current["status"]}
    if plural in STATUS:
        return {k: v for k, v in written.items() if k != "status"}
    return written


def immutable_violation(plural: str, current: Obj, updated: Obj) -> str | None:
    """The first immutable field the update changes, as the server's message; else None."""
    for path in IMMUTABLE.get(plural, ()):
        old, new = get_path(current, path), get_path(updated, path)
        if old is not None and old != new:
            return f"{'.'.join(path)}: Invalid value: field is immutable"
    return None


def bumped_generation(plural: str, current: Obj, updated: Obj) -> int | None:
    """The next generation when the spec changed (None: unchanged, or the kind has none)."""
    if plural not in GENERATION:
        return None
    generation = int((current.get("metadata") or {}).get("generation") or 1)
    return generation + 1 if current.get("spec") != updated.get("spec") else generation


def with_defaults(plural: str, obj: Obj) -> Obj:
    """The object with the defaults the server fills in on every write (tests/support/
    server_shapes.py holds them: one set of defaults for every emulator)."""
    out = copy.deepcopy(obj)
    fill = DEFAULTS.get(plural)
    if fill is not None and isinstance(out.get("spec"), dict):
        fill(out)
    return out


def scale_of(plural: str, obj: Obj) -> Obj:
    """The autoscaling/v1 Scale the /scale subresource shows of an object."""
    spec_path, status_path, selector_path = SCALE[plural]
    meta = obj.get("metadata") or {}
    status: Obj = {"replicas": int(get_path(obj, status_path) or 0)}
    selector = get_path(obj, selector_path) if selector_path else None
    if plural == "deployments":
        labels = get_path(obj, ("spec", "selector", "matchLabels")) or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    if selector:
        status["selector"] = selector
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": int(get_path(obj, spec_path) or 0)},
        "status": status,
    }


def scaled(plural: str, obj: Obj, scale_patch: Mapping[str, Any]) -> Obj:
    """The object after a write of a Scale: only its replicas change."""
    replicas = get_path(scale_patch, ("spec", "replicas"))
    out = copy.deepcopy(obj)
    if replicas is not None:
        set_path(out, SCALE[plural][0], int(replicas))
    return out
