"""PURE: in Router mode, which pods the Service `<name>` selects, and whether clients already
reach the model through the router (Ready waits for it).

kube-proxy balances connections and keeps an open connection on the pod it chose, even after
the Service's selector changed. A keep-alive HTTP client or a gRPC channel opened while the
Service selected Triton pods would stay on one Triton pod for its whole life. So:

- In Router mode the Service selects the router's pods from its creation, never Triton pods.
- A Service that selects Triton pods (the ModelDeployment switched from another mode) keeps
  them until a router pod is Ready and runs the newest route table, then moves to the router;
  the moment of that move is recorded on the Service (`ANNOTATION_SELECTS_ROUTER_SINCE`).
- Ready is True only once the Service selects the router's pods, a router pod is Ready and runs
  the newest table, and both have been so for `drainSeconds`: the time an endpoint change takes
  to reach every node's kube-proxy (the same bound the drain relies on). The same holds after
  every later switch: a router recreated after its deletion, or scaled up from 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..api import TrafficMode, TrafficStatus
from ..render.router import router_selector
from ..render.service import service_selector
from .clock import parse_time
from .traffic import RouterReport

ANNOTATION_SELECTS_ROUTER_SINCE = "modelops.dev/selects-router-since"
# Kubernetes writes times in whole seconds (truncated): a moment read back may be up to this
# much earlier than it was.
TIME_RESOLUTION_SECONDS = 1.0


@dataclass(frozen=True)
class Gate:
    """Why clients do not yet reach the model through the router (None: they do), and when to
    look again."""

    waiting: str | None
    recheck_after: float | None = None


OPEN = Gate(None)


def selects_router(service: Mapping[str, Any] | None, md_name: str) -> bool:
    """The Service's selector is the router's."""
    selector = ((service or {}).get("spec") or {}).get("selector")
    return selector == router_selector(md_name)


def _ready_since(pod: Mapping[str, Any]) -> datetime | bool | None:
    """When the pod became Ready (True: Ready, time unknown; None: not Ready)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime")) or True
    return None


def _earliest_ready(pods: Sequence[Mapping[str, Any]]) -> datetime | bool | None:
    """The longest-Ready router pod's Ready time (True: one is Ready, time unknown)."""
    times = [since for pod in pods if (since := _ready_since(pod)) is not None]
    if any(since is True for since in times):
        return True
    dated = [since for since in times if isinstance(since, datetime)]
    return min(dated) if dated else None


def router_serves(
    pods: Sequence[Mapping[str, Any]], report: RouterReport | None, status: TrafficStatus
) -> bool:
    """A router pod is Ready, and the router pods run the newest route table."""
    return _earliest_ready(pods) is not None and report is not None and report.runs(status.version)


def wanted_selector(
    mode: TrafficMode,
    md_name: str,
    service: Mapping[str, Any] | None,
    serves: bool,
) -> dict[str, str]:
    """The Service's selector: the router's pods in Router mode (from the Service's creation;
    after a switch from another mode only once the router serves), else the Triton pods."""
    if mode != TrafficMode.ROUTER:
        return service_selector(md_name)
    if service is None or selects_router(service, md_name) or serves:
        return router_selector(md_name)
    return service_selector(md_name)


def gate(
    *,
    md_name: str,
    service: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    report: RouterReport | None,
    status: TrafficStatus,
    now: datetime,
    settle_seconds: float,
    was_ready: bool,
) -> Gate:
    """Router mode: do clients reach the model through a router pod that runs the newest
    table, with the endpoint change already at every node? Once Ready, a Ready router pod is
    enough: its readiness is the agent's word that HAProxy runs the newest table it was given,
    so a table that only drops a drained revision does not turn Ready off."""
    if service is None or not selects_router(service, md_name):
        return Gate(f"the Service {md_name} does not select the router's pods yet")
    ready = _earliest_ready(pods)
    if ready is None:
        return Gate("no router pod is ready")
    if not was_ready and (report is None or not report.runs(status.version)):
        return Gate(f"the router pods do not run route table version {status.version} yet", 1.0)
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    moments = [
        moment
        for moment in (parse_time(annotations.get(ANNOTATION_SELECTS_ROUTER_SINCE)), ready)
        if isinstance(moment, datetime)
    ]
    if moments:
        settled = max(moments).timestamp() + settle_seconds + TIME_RESOLUTION_SECONDS
        left = settled - now.timestamp()
        if left > 0:
            return Gate(f"the router's endpoints reach every node within {settle_seconds:g}s", left)
    return OPEN
