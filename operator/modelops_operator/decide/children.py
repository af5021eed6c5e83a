"""Every write to children for one reconcile, ordered so that serving capacity only grows first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..render.names import revision_name, revision_of
from ..render.revision import render_configmap
from .build import BuildOutcome
from .facts import Facts, Lineage
from .lineage import Moved
from .plan import Action, Apply, Delete
from .replicas import replica_plan
from .routing import TrafficPlan, traffic_writes
from .validation import stale_jobs


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


def capacity_holds(facts: Facts, lineage: Lineage, desired: int) -> frozenset[int]:
    """Other revisions keep their pods while the serving one is short of its ready replicas
    (a rollback keeps the candidate's capacity until the old revision is back)."""
    current = facts.current_view(lineage)
    if current is None or current.ready >= desired:
        return frozenset()
    return frozenset(n for n in facts.revisions if n != current.number)


def child_writes(
    facts: Facts,
    lineage: Lineage,
    build: BuildOutcome,
    moved: Moved,
    traffic: TrafficPlan,
    desired: int,
    asleep: bool = False,
) -> ChildWrites:
    """Build and validation Jobs, ConfigMaps, the router, Services and routes, new
    Deployments, then scale-ups before scale-downs, then deletions. `asleep`: the serving
    revision scales to zero (idle), once the router holds its requests."""
    keep = kept_revisions(lineage)
    holds = traffic.holds | capacity_holds(facts, lineage, desired)
    sleeping = frozenset({lineage.current}) if asleep and lineage.current is not None else None
    replicas = replica_plan(facts.revisions, moved.targets, keep, holds, sleeping or frozenset())
    configmaps = [o for o in moved.new_objects if o["kind"] == "ConfigMap"]
    configmaps += _lost_configmaps(facts, build, keep)
    deployments = [Apply(o) for o in moved.new_objects if o["kind"] == "Deployment"]
    waiting = (
        [lineage.candidate]
        if lineage.candidate is not None and not (lineage.progress and lineage.progress.validated)
        else []
    )
    actions: tuple[Action, ...] = (
        *build.actions,
        *stale_jobs(facts.observed.validation_jobs, facts.name, waiting),
        *(Apply(o) for o in configmaps),
        *deployments,
        *traffic_writes(facts, traffic, bool(facts.revisions or moved.new_objects)),
        *moved.actions,
        *replicas.ups,
        *replicas.downs,
        *replicas.deletes,
        *_orphan_configmaps(facts, keep),
    )
    return ChildWrites(actions, replicas.held)
