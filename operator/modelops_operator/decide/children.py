"""Every write to children for one reconcile, ordered so that serving capacity only grows first."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..render.names import revision_name, revision_of
from ..render.revision import render_configmap
from ..render.service import render_service
from .build import BuildOutcome
from .facts import Facts, Lineage
from .plan import Action, Apply, Delete
from .replicas import replica_plan


@dataclass(frozen=True)
class ChildWrites:
    """The ordered writes, and whether a scale-down was held back to keep pods serving."""

    actions: tuple[Action, ...]
    held: bool


def kept_revisions(lineage: Lineage) -> set[int]:
    """Revisions whose Deployments stay: the tracked ones and everything in history."""
    tracked = {n for n in (lineage.current, lineage.candidate, lineage.previous) if n is not None}
    return tracked | {entry.revision for entry in lineage.history}


def _orphan_configmaps(facts: Facts, keep: set[int]) -> list[Action]:
    """Revision ConfigMaps left behind by a revision that is gone and no longer tracked."""
    return [
        Delete("v1", "ConfigMap", name)
        for name in sorted(facts.observed.configmaps)
        if (number := revision_of(name)) is not None
        and name == revision_name(facts.name, number)
        and number not in keep
        and number not in facts.revisions
    ]


def _lost_configmaps(facts: Facts, build: BuildOutcome, keep: set[int]) -> list[dict[str, Any]]:
    """Kept revisions of today's engine and serving options whose ConfigMap vanished."""
    if build.manifest is None:
        return []
    return [
        render_configmap(facts.md, number, build.manifest, facts.settings)
        for number, view in sorted(facts.revisions.items())
        if (view.key, view.serving_hash) == (facts.key, facts.serving_hash)
        and number in keep
        and view.name not in facts.observed.configmaps
    ]


def _service(facts: Facts, new_objects: tuple[dict[str, Any], ...]) -> list[Action]:
    """The Service, written when revisions exist and it differs in selector or ports."""
    if not facts.revisions and not new_objects:
        return []
    wanted = render_service(facts.md)
    have = (facts.observed.service or {}).get("spec") or {}
    if any(have.get(part) != wanted["spec"][part] for part in ("selector", "ports")):
        return [Apply(wanted)]
    return []


def child_writes(
    facts: Facts,
    lineage: Lineage,
    build: BuildOutcome,
    targets: Mapping[int, int],
    new_objects: tuple[dict[str, Any], ...],
) -> ChildWrites:
    """Build Job writes, ConfigMaps, the Service, new Deployments, then scale-ups before
    scale-downs, then deletions."""
    keep = kept_revisions(lineage)
    replicas = replica_plan(facts.revisions, targets, keep)
    configmaps = [o for o in new_objects if o["kind"] == "ConfigMap"]
    configmaps += _lost_configmaps(facts, build, keep)
    deployments = [Apply(o) for o in new_objects if o["kind"] == "Deployment"]
    actions: tuple[Action, ...] = (
        *build.actions,
        *(Apply(o) for o in configmaps),
        *_service(facts, new_objects),
        *deployments,
        *replicas.ups,
        *replicas.downs,
        *replicas.deletes,
        *_orphan_configmaps(facts, keep),
    )
    return ChildWrites(actions, replicas.held)
