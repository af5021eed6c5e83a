"""PURE: who gets client requests, in each traffic mode, and whether the router applied it.

The candidate gets no request before its validation run passed. Then it gets the step's
percent (all of it for an immediate rollout), or the previous step's while it scales up for the
next one. A revision that must stop serving keeps a weight of 0 in the table until its pods are
gone, and its pods go only once every router pod runs a table that gives it 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..api import (
    RouteTable,
    TrafficMode,
    TrafficStatus,
    TrafficWeight,
)
from ..api.routes import Route
from ..render.names import revision_name


@dataclass(frozen=True)
class RouterReport:
    """What the router pods say they run (from their agents' metrics)."""

    pods: int
    ready_pods: int
    applied_versions: tuple[int, ...]

    def runs(self, version: int) -> bool:
        """Every ready router pod reported, and each runs `version` or newer."""
        reported = len(self.applied_versions)
        return (
            reported > 0 and reported >= self.ready_pods and min(self.applied_versions) >= version
        )


ROUTER_SECONDS = 2.0  # router pods are read this often (and after every reconcile)
ROUTER_CATCHUP_SECONDS = 0.25  # while they do not run the published table yet...
ROUTER_CATCHUP_WINDOW = 10.0  # ...for this long at most (a stuck router is read as usual)


def router_read_delay(
    report: RouterReport | None, published: int | None, lagging_for: float
) -> float:
    """Seconds until the router pods are read again: soon while they have not confirmed the
    newest published table (the status waits on it: Ready, the next canary step), for at most
    ROUTER_CATCHUP_WINDOW seconds; else every ROUTER_SECONDS."""
    behind = (
        report is not None
        and report.pods > 0
        and published is not None
        and not report.runs(published)
    )
    if behind and lagging_for < ROUTER_CATCHUP_WINDOW:
        return ROUTER_CATCHUP_SECONDS
    return ROUTER_SECONDS


def split(current: int | None, candidate: int | None, canary_weight: int) -> dict[int, int]:
    """Weights of the serving pair: the candidate's percent, the current revision the rest."""
    weights: dict[int, int] = {}
    if candidate is not None:
        weights[candidate] = canary_weight
    if current is not None and current != candidate:
        weights[current] = 100 - (canary_weight if candidate is not None else 0)
    return weights


def with_draining(weights: Mapping[int, int], running: Sequence[int]) -> dict[int, int]:
    """The weights plus a 0 for every other revision that still runs pods."""
    return {**{number: 0 for number in running if number not in weights}, **weights}


def next_status(
    mode: TrafficMode,
    old: TrafficStatus | None,
    weights: Mapping[int, int],
    applied: str | None,
    hold_seconds: int = 0,
) -> TrafficStatus:
    """status.traffic: the version moves only when the weights or the hold change."""
    wanted = [TrafficWeight(revision=n, weight=w) for n, w in sorted(weights.items())]
    version = old.version if old is not None else 0
    same = (
        old is not None
        and old.mode == mode
        and old.weights == wanted
        and old.hold_seconds == hold_seconds
    )
    return TrafficStatus(
        mode=mode,
        version=version if same else version + 1,
        weights=wanted,
        applied=applied,
        hold_seconds=hold_seconds,
    )


def route_table(md_name: str, namespace: str, status: TrafficStatus) -> RouteTable:
    """The router's table for a traffic status (revision Services named <name>-r<N>)."""
    return RouteTable(
        version=status.version,
        namespace=namespace,
        routes=[
            Route(revision=w.revision, service=revision_name(md_name, w.revision), weight=w.weight)
            for w in status.weights
        ],
        hold_seconds=status.hold_seconds,
    )


def router_synced(mode: TrafficMode, status: TrafficStatus, report: RouterReport | None) -> bool:
    """True when taking a zero-weight revision's pods away can no longer cost a request."""
    if mode == TrafficMode.REPLICAS:
        return True
    if mode == TrafficMode.ROUTER:
        return report is not None and report.runs(status.version)
    # A gateway reports no applied version: its route was written; the Gateway's own status is
    # read by the k8s layer into `report` when it can tell.
    return report is None or report.runs(status.version)


def applied_note(mode: TrafficMode, status: TrafficStatus, report: RouterReport | None) -> str:
    """status.traffic.applied: what the router says, for kubectl."""
    if mode != TrafficMode.ROUTER:
        return f"{mode} mode"
    if report is None:
        return "router not reporting yet"
    runs = sum(1 for v in report.applied_versions if v >= status.version)
    return f"{runs}/{report.pods} router pods run version {status.version}"
