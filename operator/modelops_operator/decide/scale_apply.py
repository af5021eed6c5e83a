"""The autoscaler's recommendation applied inside reconcile (PURE): replicas, lastScale, Event.

The telemetry task only gathers figures and calls `scale_recommend.recommend`; what the decision
does to the children is decided here, with the same clamps as every other replica count, so a
stale or out-of-bounds recommendation can never reach a Deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api import (
    MetricsStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ScaleRecord,
    ScalingSpec,
)
from .inputs import DecideContext
from .plan import Emit, EventReason

REASON_LIMIT = 1024


@dataclass(frozen=True)
class Scaled:
    """The total desired replicas after the decision, the status fields it sets, its Event."""

    desired: int
    last_scale: ScaleRecord | None
    metrics: MetricsStatus | None
    events: tuple[Emit, ...] = ()


def clamp(spec: ScalingSpec, replicas: int) -> int:
    """A replica count inside [minReplicas, maxReplicas]."""
    return min(spec.max_replicas, max(spec.floor, replicas))


def apply_scale(
    spec: ModelDeploymentSpec,
    base: int,
    ctx: DecideContext,
    old: ModelDeploymentStatus,
    now: str,
) -> Scaled:
    """`base` (desired_replicas' count) moved to the decision's count when it still applies.

    A decision applies only with spec.scaling set and when it was made against `base`: one
    made before a spec change or another scaling step is dropped (the next interval decides
    again) rather than applied twice. status.metrics takes the newest figures, else is kept.
    """
    metrics = ctx.metrics if ctx.metrics is not None else old.metrics
    unchanged = Scaled(base, old.last_scale, metrics)
    decision = ctx.scale
    if spec.scaling is None or decision is None or decision.current != base:
        return unchanged
    target = clamp(spec.scaling, decision.desired)
    if target == base:
        return unchanged
    reason = decision.reason[:REASON_LIMIT]
    record = ScaleRecord.model_validate({"from": base, "to": target, "reason": reason, "time": now})
    event = Emit(EventReason.SCALED, f"{base} -> {target} replicas: {reason}")
    return Scaled(target, record, metrics, (event,))
