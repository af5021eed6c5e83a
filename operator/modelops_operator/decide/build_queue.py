"""PURE: which builds may start now, and the fair queue of the others.

Build Jobs run in the release namespace, outside every tenant's ResourceQuota, so the operator
caps them itself: `build.maxConcurrent` in all and `build.maxConcurrentPerNamespace` per tenant
namespace. A build that cannot start waits in a queue that is fair between namespaces: the
first waiting build of each namespace, oldest first, then the second of each, and so on, so a
tenant with many models cannot push another tenant's single build back. Waiting builds say so in
status (EngineBuilt=False, reason Queued, "position N").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

QUEUED = "Queued"


@dataclass(frozen=True, order=True)
class Waiting:
    """A ModelDeployment waiting for a build slot, since when (RFC 3339, sorts as time)."""

    since: str
    namespace: str
    name: str


@dataclass(frozen=True)
class BuildLoad:
    """Unfinished build Jobs by their owner's namespace, and the builds waiting for a slot."""

    running: Mapping[str, int] = field(default_factory=dict)
    waiting: tuple[Waiting, ...] = ()


def fair_order(entries: Iterable[Waiting]) -> list[Waiting]:
    """Round-robin between namespaces, oldest first within each."""
    rank: Counter[str] = Counter()
    keyed = []
    for entry in sorted(set(entries)):
        keyed.append((rank[entry.namespace], entry))
        rank[entry.namespace] += 1
    return [entry for _, entry in sorted(keyed)]


def queue_position(
    me: Waiting, load: BuildLoad, max_total: int, max_per_namespace: int
) -> int | None:
    """None when `me` may start its build now; else its place in the fair queue (1-based).

    A build starts when its namespace is under its cap and it is among the first builds of the
    fair order that could start, as many as there are free slots. 0 means no cap."""
    waiting = [w for w in load.waiting if (w.namespace, w.name) != (me.namespace, me.name)]
    order = fair_order([*waiting, me])
    busy = Counter(load.running)
    free = max_total - sum(busy.values()) if max_total > 0 else len(order)
    # Hand the free slots out in the fair order, each namespace up to its cap.
    for entry in order:
        if free <= 0:
            break
        if 0 < max_per_namespace <= busy[entry.namespace]:
            continue
        if entry == me:
            return None
        busy[entry.namespace] += 1
        free -= 1
    return order.index(me) + 1


def waiting_builds(bodies: Iterable[Mapping[str, Any] | None]) -> tuple[Waiting, ...]:
    """The ModelDeployments whose status says their build waits for a slot (EngineBuilt False,
    reason Queued), since their condition's transition."""
    out = []
    for body in bodies:
        if not body:
            continue
        meta = body.get("metadata") or {}
        for condition in (body.get("status") or {}).get("conditions") or []:
            if (
                isinstance(condition, Mapping)
                and condition.get("type") == "EngineBuilt"
                and condition.get("status") == "False"
                and condition.get("reason") == QUEUED
            ):
                since = str(condition.get("lastTransitionTime") or "")
                out.append(Waiting(since, str(meta.get("namespace") or ""), str(meta.get("name"))))
    return tuple(out)
