"""Is a pod set healthy: crash loops, readiness times, the progress deadline, and pods that are
stuck before they ever run (unschedulable, an image that cannot be pulled, a container that
cannot be created), with the scheduler's or the kubelet's own words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import parse_time
from .revisions import RevisionView, as_int

CRASH_LOOP_RESTARTS = 3
# Waiting reasons of a container that will not start by waiting longer: the kubelet's words.
IMAGE_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
START_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
MESSAGE_CHARS = 600


@dataclass(frozen=True)
class Stuck:
    """A pod that cannot run: the reason (Unschedulable, ImagePullBackOff, ...), a message with
    the scheduler's or kubelet's words, and since when (None: unknown)."""

    reason: str
    message: str
    since: datetime | None

    def waited(self, now: datetime) -> float:
        """Seconds stuck so far (0 when unknown)."""
        return (now - self.since).total_seconds() if self.since is not None else 0.0


def _stuck_pod(pod: Mapping[str, Any]) -> Stuck | None:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return None
    name = meta.get("name", "?")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            words = str(condition.get("message") or condition.get("reason") or "").strip()
            return Stuck(
                "Unschedulable",
                f"pod {name} cannot be scheduled: {words}"[:MESSAGE_CHARS],
                parse_time(condition.get("lastTransitionTime")),
            )
    started = parse_time(status.get("startTime")) or parse_time(meta.get("creationTimestamp"))
    for container in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in IMAGE_REASONS or reason in START_REASONS:
            words = str(waiting.get("message") or "").strip()
            text = f"pod {name} container {container.get('name', '?')}: {reason}"
            return Stuck(reason, f"{text}: {words}"[:MESSAGE_CHARS] if words else text, started)
    return None


def stuck(pods: Sequence[Mapping[str, Any]]) -> Stuck | None:
    """The first stuck pod of a set (by name, so the answer is stable), or None."""
    ordered = sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", "")))
    return next((found for pod in ordered if (found := _stuck_pod(pod)) is not None), None)


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


TAMPERED = "EngineTampered"


def tampered_report(pods: Sequence[Mapping[str, Any]], container: str) -> str | None:
    """The message of a pod's `container` (the engine pull) that refused the entry's bytes."""
    for pod in pods:
        for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
            if status.get("name") != container:
                continue
            for state in (status.get("state") or {}, status.get("lastState") or {}):
                message = str((state.get("terminated") or {}).get("message") or "")
                if TAMPERED in message:
                    return message.strip()[:MESSAGE_CHARS]
    return None
