"""Is a candidate's pod set healthy: crash loops, readiness times, the progress deadline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from .clock import parse_time
from .revisions import RevisionView, as_int

CRASH_LOOP_RESTARTS = 3


def crash_loop(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """A message naming the crash-looping container, or None."""
    for pod in pods:
        status = pod.get("status") or {}
        pod_name = (pod.get("metadata") or {}).get("name", "?")
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            restarts = as_int(container.get("restartCount"))
            waiting = ((container.get("state") or {}).get("waiting") or {}).get("reason")
            if restarts >= CRASH_LOOP_RESTARTS or waiting == "CrashLoopBackOff":
                last = ((container.get("lastState") or {}).get("terminated") or {}).get("reason")
                detail = f", last exit: {last}" if last else ""
                state = f", {waiting}" if waiting else ""
                return (
                    f"pod {pod_name} container {container.get('name', '?')} restarted "
                    f"{restarts} times (limit {CRASH_LOOP_RESTARTS}){state}{detail}"
                )
    return None


def ready_since(candidate: RevisionView, fallback: datetime) -> datetime:
    """When the last of the candidate's pods became Ready (never before `fallback`)."""
    latest = fallback
    for pod in candidate.pods:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "Ready" and condition.get("status") == "True":
                moment = parse_time(condition.get("lastTransitionTime"))
                if moment is not None and moment > latest:
                    latest = moment
    return latest


def deployment_gave_up(candidate: RevisionView | None) -> str | None:
    """The Deployment controller's own ProgressDeadlineExceeded message, or None."""
    if candidate is None:
        return None
    for condition in (candidate.deployment.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("status") == "False"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            text = str(condition.get("message") or "").strip()
            return f"Deployment {candidate.name} reports ProgressDeadlineExceeded" + (
                f": {text}" if text else ""
            )
    return None
