"""The autoscaler's recommendation, made by the telemetry task each interval (PURE).

The HPA rule `desired = ceil(ready * observed / target)` with a 10% dead band, immediate but
bounded scale-up, delayed scale-down (highest recommendation in the window), [min, max] bounds
and no change on missing or stale data. Times are plain seconds on the caller's clock.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ..api import ScalingMetric, ScalingSpec
from ..metrics.rates import IntervalFigures, aggregate

TOLERANCE = 0.1
# ceil() of a product that is an integer up to float noise must not add a replica.
_EPS = 1e-9

Recommendation = tuple[float, int]


@dataclass(frozen=True)
class ScaleDecision:
    """The replica count to run, why, and the recommendations to pass to the next call."""

    desired: int
    current: int
    reason: str
    recommendations: tuple[Recommendation, ...] = ()
    observed: float | None = None

    @property
    def changed(self) -> bool:
        """True when the Deployment must be scaled."""
        return self.desired != self.current


def _fmt(metric: ScalingMetric, value: float) -> str:
    if metric == ScalingMetric.QUEUE_TIME:
        return f"{value:.0f}us"
    if metric == ScalingMetric.GPU_UTILIZATION:
        return f"{value:.0f}%"
    return f"{value:.3g}/s per replica"


def _ceil(x: float) -> int:
    # A ratio that overflowed stands for "as many as allowed": callers bound it by maxReplicas.
    if math.isinf(x) and x > 0:
        return sys.maxsize
    return max(0, math.ceil(x - _EPS))


def observed_value(figures: IntervalFigures, metric: ScalingMetric, ready: int) -> float | None:
    """The figure the metric holds at target; None when the figures cannot tell."""
    if metric == ScalingMetric.INFERENCES_PER_SECOND:
        # Per ready replica; with fewer pods reporting than ready, per reporting pod, so a
        # missing scrape does not look like less load.
        return figures.inferences_per_second / max(1, min(figures.pods, ready))
    if metric == ScalingMetric.QUEUE_TIME:
        if figures.requests == 0:
            return 0.0  # idle: nothing queued
        return figures.avg_queue_us
    return figures.gpu_utilization


def prune(
    recent: Sequence[Recommendation], now: float, delay_s: float
) -> tuple[Recommendation, ...]:
    """Recommendations inside the scale-down window, plus the newest older one as proof that
    the window is fully covered by observations."""
    start = now - delay_s
    inside = sorted((t, r) for t, r in recent if start <= t <= now)
    before = [(t, r) for t, r in recent if t < start]
    anchor = [max(before)] if before else []
    return (*anchor, *inside)


def recommend(
    figures: IntervalFigures | Sequence[IntervalFigures] | None,
    ready_replicas: int,
    current_replicas: int,
    spec: ScalingSpec,
    recent_recommendations: Sequence[Recommendation],
    now: float,
    stale_after_seconds: float,
) -> ScaleDecision:
    """Desired replicas for one interval; feed `recommendations` back into the next call.

    `figures` are per-pod figures (aggregated here) or an aggregate, from ready pods.
    Not-ready pods are never counted as capacity. Scale-down lands on
    ceil(need * 1.1) so that the new count sits inside the dead band and noise of up to
    +-5% cannot push it straight back up.
    """
    lo, hi = spec.floor, spec.max_replicas
    metric = ScalingMetric(spec.metric)
    delay = float(spec.scale_down_delay_seconds)
    kept = prune(recent_recommendations, now, delay)
    current = current_replicas

    def hold(reason: str, observed: float | None = None) -> ScaleDecision:
        return ScaleDecision(current, current, reason, kept, observed)

    if current < lo or current > hi:
        bound = lo if current < lo else hi
        which = "minReplicas" if current < lo else "maxReplicas"
        return ScaleDecision(bound, current, f"{which} is {bound}, running {current}", kept)
    agg = figures if isinstance(figures, IntervalFigures) or figures is None else aggregate(figures)
    if agg is None or agg.pods == 0:
        return hold("no metrics: no change")
    age = now - agg.end
    if age > stale_after_seconds:
        return hold(
            f"metrics are {age:.0f}s old (stale after {stale_after_seconds:.0f}s): no change"
        )
    if ready_replicas <= 0:
        return hold("no ready replicas to measure: no change")
    observed = observed_value(agg, metric, ready_replicas)
    if observed is None:
        return hold(f"no {metric.value} figure in the metrics: no change")
    if not math.isfinite(observed) or observed < 0:
        return hold(f"{metric.value} figure {observed!r} is not a usable number: no change")
    target = spec.target
    ratio = observed / target
    shown, goal = _fmt(metric, observed), _fmt(metric, target)
    partial = agg.pods < ready_replicas

    if abs(ratio - 1.0) <= TOLERANCE:
        kept = prune([*kept, (now, current)], now, delay)
        return hold(f"{metric.value} {shown} within 10% of target {goal}", observed)

    if ratio > 1.0:
        raw = min(hi, max(lo, _ceil(ready_replicas * ratio)))
        kept = prune([*kept, (now, raw)], now, delay)
        desired = min(raw, max(2 * current, current + 1))
        if desired <= current:
            return hold(
                f"{metric.value} {shown} > target {goal}, but {current} replicas are already "
                f"running ({ready_replicas} ready)"
                + (f", at maxReplicas {hi}" if current >= hi else ""),
                observed,
            )
        capped = f" (needs {raw}; at most double per step)" if desired < raw else ""
        return ScaleDecision(
            desired, current, f"{metric.value} {shown} > target {goal}{capped}", kept, observed
        )

    raw = min(hi, max(lo, _ceil(ready_replicas * ratio * (1.0 + TOLERANCE))))
    if partial:
        # Pods without figures might carry the load we cannot see: never scale down on them.
        kept = prune([*kept, (now, current)], now, delay)
        return hold(
            f"{metric.value} {shown} < target {goal}, but only {agg.pods} of "
            f"{ready_replicas} ready pods reported: no scale-down",
            observed,
        )
    kept = prune([*kept, (now, raw)], now, delay)
    window = [r for t, r in kept if t >= now - delay]
    covered = delay <= 0 or any(t <= now - delay for t, _ in kept)
    desired = min(current, max(window))
    if desired >= current:
        return hold(
            f"{metric.value} {shown} < target {goal}, {current} replicas still needed "
            f"within scaleDownDelaySeconds {delay:.0f}",
            observed,
        )
    if not covered:
        return hold(
            f"{metric.value} {shown} < target {goal}: waiting for scaleDownDelaySeconds "
            f"{delay:.0f} before scaling to {desired}",
            observed,
        )
    return ScaleDecision(
        desired,
        current,
        f"{metric.value} {shown} < target {goal} for {delay:.0f}s",
        kept,
        observed,
    )
