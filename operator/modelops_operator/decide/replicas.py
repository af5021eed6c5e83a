"""Replica counts: the desired total, and the writes that move every revision to its target.

Capacity only ever grows first: scale-ups are applied before scale-downs, and no revision loses
its ready pods while no other revision serves.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api import ModelDeploymentSpec, ModelDeploymentStatus
from .plan import Apply, Delete
from .revisions import RevisionView


def desired_replicas(
    spec: ModelDeploymentSpec,
    current: RevisionView | None,
    in_flight: bool,
    old: ModelDeploymentStatus,
) -> int:
    """serving.replicas; with scaling, the autoscaler's count on the current Deployment, clamped.

    During a rollout the two Deployments' counts move with the canary split, so the total
    recorded in status.replicas when the rollout began stays the reference.
    """
    if spec.scaling is None:
        return spec.serving.replicas
    low, high = spec.scaling.floor, spec.scaling.max_replicas
    if in_flight and old.replicas > 0:
        base = old.replicas
    elif current is not None:
        base = current.replicas
    else:
        base = low
    return min(high, max(low, base))


def scaled_manifest(deployment: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """An existing revision as observed, with another replica count (nothing else changes).

    Re-rendering an old revision from today's spec would change its pods; copying what runs
    keeps the revision exactly what it was.
    """
    meta = deployment.get("metadata") or {}
    kept = ("name", "namespace", "labels", "annotations", "ownerReferences")
    spec = copy.deepcopy(dict(deployment.get("spec") or {}))
    spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {k: copy.deepcopy(meta[k]) for k in kept if k in meta},
        "spec": spec,
    }


def safe_to_zero(
    revisions: Mapping[int, RevisionView],
    targets: Mapping[int, int],
    number: int,
    sleeping: frozenset[int] = frozenset(),
) -> bool:
    """Never take the last ready pods away: zero a revision only if another one keeps serving,
    or when it goes to sleep (scale to zero: the router holds its requests)."""
    if revisions[number].ready == 0 or number in sleeping:
        return True
    return any(
        other != number and view.ready >= 1 and targets.get(other, 0) > 0
        for other, view in revisions.items()
    )


@dataclass(frozen=True)
class ReplicaPlan:
    """Scale-ups (first), scale-downs, deletions of revisions, and whether one was held back."""

    ups: tuple[Apply, ...]
    downs: tuple[Apply, ...]
    deletes: tuple[Delete, ...]
    held: bool


def replica_plan(
    revisions: Mapping[int, RevisionView],
    wanted: Mapping[int, int],
    keep: set[int],
    holds: frozenset[int] = frozenset(),
    sleeping: frozenset[int] = frozenset(),
) -> ReplicaPlan:
    """Scale every observed revision to its target (0 when none), delete those out of history.

    A revision keeps its pods while taking them would cost requests: when no other revision
    serves, or when it is in `holds` (the router still sends it requests, or the serving
    revision is not back at its desired ready replicas).
    """
    targets = {number: wanted.get(number, 0) for number in revisions}
    held, deletes = False, list[Delete]()
    for number, view in sorted(revisions.items()):
        kept_back = number in holds or not safe_to_zero(revisions, targets, number, sleeping)
        if targets[number] == 0 and view.replicas > 0 and kept_back:
            targets[number], held = view.replicas, True
        elif number not in keep and not kept_back:
            deletes += [
                Delete("apps/v1", "Deployment", view.name),
                Delete("v1", "ConfigMap", view.name),
                Delete("v1", "Service", view.name),
            ]
            targets.pop(number)
    ups: list[Apply] = []
    downs: list[Apply] = []
    for number, target in sorted(targets.items()):
        view = revisions[number]
        if view.replicas != target:
            (ups if target > view.replicas else downs).append(
                Apply(scaled_manifest(view.deployment, target))
            )
    return ReplicaPlan(tuple(ups), tuple(downs), tuple(deletes), held)
