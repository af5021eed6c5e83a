"""PURE: when to look at a ModelDeployment again: the plan's requeue, the jittered safety net,
the backoff after a failed reconcile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The safety net of each ModelDeployment fires within +-JITTER of its interval, and its first
# pass anywhere in the first interval: a thousand objects created together never fire together.
JITTER = 0.2
BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 120.0


def safety_delay(interval: float, draw: float, *, first: bool = False) -> float:
    """Seconds until the next safety-net pass; `draw` is uniform in [0, 1)."""
    if first:
        return interval * (JITTER + (1 - JITTER) * draw)
    return interval * (1 - JITTER + 2 * JITTER * draw)


def retry_delay(failures: int) -> float:
    """Seconds before retrying after `failures` failed reconciles in a row (1, 2, ...)."""
    exponent = max(0, min(failures - 1, 6))
    return float(min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2**exponent))


def next_delay(requeue_after: float | None, safety: float, interval: float) -> float:
    """The sooner of the plan's own requeue and the safety net; a requeue about as far as the
    safety net (a plan waiting "one interval") takes the jittered safety net instead."""
    if requeue_after is None or requeue_after >= interval * (1 - JITTER):
        return safety
    return max(0.0, min(requeue_after, safety))


# What a reconcile depends on besides status: a change of any of these is worth a reconcile;
# a status-only change (our own patch's echo) is not.
def trigger_fingerprint(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """The parts of a ModelDeployment body whose change asks for a reconcile."""
    meta = body.get("metadata") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        tuple(meta.get("finalizers") or ()),
        tuple(sorted((meta.get("labels") or {}).items())),
        tuple(sorted((meta.get("annotations") or {}).items())),
        repr(body.get("spec")),
    )
