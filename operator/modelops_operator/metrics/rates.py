"""Interval figures from two samples of one pod, and their aggregate over pods (PURE).

Deltas are kept next to the derived figures so that an aggregate over pods weights every ratio
by its real denominator (error rate by requests, queue time by successful requests, batch size
by executions) instead of averaging per-pod ratios.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..api.status import MetricsStatus
from .sample import ModelCounters, TritonSample

P99 = 0.99


@dataclass(frozen=True)
class IntervalFigures:
    """What Triton did over one interval, for one pod or summed over `pods` pods.

    `end` is the timestamp of the later sample (the oldest one in an aggregate): the age used
    to judge staleness. Rates are per second of each pod's own interval, summed over pods.
    """

    seconds: float
    end: float
    pods: int
    successes: float
    failures_by_reason: Mapping[str, float]
    inferences: float
    executions: float
    queue_us: float
    requests_per_second: float
    inferences_per_second: float
    p99_ms: float | None = None
    pending: float = 0.0
    gpu_utilization: float | None = None
    counter_reset: bool = False
    gpu_pods: int = field(default=0, repr=False)

    @property
    def failures(self) -> float:
        """Failed requests in the interval."""
        return sum(self.failures_by_reason.values())

    @property
    def requests(self) -> float:
        """All requests (successful and failed) in the interval."""
        return self.successes + self.failures

    @property
    def error_rate(self) -> float | None:
        """Failed / all requests; None without traffic (0/0 is not a healthy 0)."""
        return self.failures / self.requests if self.requests > 0 else None

    @property
    def error_rate_by_reason(self) -> dict[str, float]:
        """Failures of each reason / all requests; empty without traffic."""
        if self.requests <= 0:
            return {}
        return {r: v / self.requests for r, v in sorted(self.failures_by_reason.items()) if v > 0}

    @property
    def avg_queue_us(self) -> float | None:
        """Average queue time per successful request (Triton adds durations on success only)."""
        return self.queue_us / self.successes if self.successes > 0 else None

    @property
    def avg_batch(self) -> float | None:
        """Inferences per model execution; failed executions count in the denominator."""
        return self.inferences / self.executions if self.executions > 0 else None


def _delta(new: float, old: float) -> float:
    return max(new - old, 0.0)


def _was_reset(earlier: ModelCounters, later: ModelCounters) -> bool:
    pairs = [
        (earlier.success, later.success),
        (earlier.inference_count, later.inference_count),
        (earlier.exec_count, later.exec_count),
        (earlier.queue_duration_us, later.queue_duration_us),
        (earlier.request_duration_us, later.request_duration_us),
    ]
    pairs += [
        (v, later.failures_by_reason.get(r, 0.0)) for r, v in earlier.failures_by_reason.items()
    ]
    return any(new < old for old, new in pairs)


def interval(earlier: TritonSample, later: TritonSample) -> IntervalFigures:
    """Figures between two samples of one pod; ValueError unless `later` follows `earlier`.

    A counter that went down means the pod (or Triton) restarted: the new sample is then taken
    as counting from zero, so no figure is ever negative.
    """
    seconds = later.timestamp - earlier.timestamp
    if seconds <= 0:
        raise ValueError(f"samples not in time order ({earlier.timestamp} -> {later.timestamp})")
    reset = _was_reset(earlier.counters, later.counters)
    old = ModelCounters() if reset else earlier.counters
    new = later.counters
    successes = _delta(new.success, old.success)
    reasons = {
        r: _delta(v, old.failures_by_reason.get(r, 0.0)) for r, v in new.failures_by_reason.items()
    }
    inferences = _delta(new.inference_count, old.inference_count)
    requests = successes + sum(reasons.values())
    # Triton's summary is a sliding window, not this interval: report it only if the interval
    # had traffic, so an idle canary is not judged on old latencies.
    p99_us = new.request_quantiles_us.get(P99)
    p99_ms = p99_us / 1000.0 if p99_us is not None and requests > 0 else None
    return IntervalFigures(
        seconds=seconds,
        end=later.timestamp,
        pods=1,
        successes=successes,
        failures_by_reason=reasons,
        inferences=inferences,
        executions=_delta(new.exec_count, old.exec_count),
        queue_us=_delta(new.queue_duration_us, old.queue_duration_us),
        requests_per_second=requests / seconds,
        inferences_per_second=inferences / seconds,
        p99_ms=p99_ms,
        pending=new.pending,
        gpu_utilization=later.gpu_utilization,
        counter_reset=reset,
        gpu_pods=1 if later.gpu_utilization is not None else 0,
    )


def aggregate(figures: Sequence[IntervalFigures]) -> IntervalFigures | None:
    """Figures over several pods: sums, ratios of sums, the worst p99; None for no pods."""
    if not figures:
        return None
    reasons: dict[str, float] = {}
    for f in figures:
        for r, v in f.failures_by_reason.items():
            reasons[r] = reasons.get(r, 0.0) + v
    p99s = [f.p99_ms for f in figures if f.p99_ms is not None]
    gpu_pods = sum(f.gpu_pods for f in figures)
    gpu_sum = sum((f.gpu_utilization or 0.0) * f.gpu_pods for f in figures)
    return IntervalFigures(
        seconds=max(f.seconds for f in figures),
        end=min(f.end for f in figures),
        pods=sum(f.pods for f in figures),
        successes=sum(f.successes for f in figures),
        failures_by_reason=reasons,
        inferences=sum(f.inferences for f in figures),
        executions=sum(f.executions for f in figures),
        queue_us=sum(f.queue_us for f in figures),
        requests_per_second=sum(f.requests_per_second for f in figures),
        inferences_per_second=sum(f.inferences_per_second for f in figures),
        # Quantiles of different pods cannot be merged; the worst pod is what a gate must see.
        p99_ms=max(p99s) if p99s else None,
        pending=sum(f.pending for f in figures),
        gpu_utilization=gpu_sum / gpu_pods if gpu_pods else None,
        counter_reset=any(f.counter_reset for f in figures),
        gpu_pods=gpu_pods,
    )


def to_metrics_status(figures: IntervalFigures | None, observed_at: str) -> MetricsStatus:
    """status.metrics for these figures; all None when there were none."""
    if figures is None:
        return MetricsStatus(observed_at=observed_at)
    return MetricsStatus(
        inferences_per_second=round(figures.inferences_per_second, 3),
        avg_queue_microseconds=_round(figures.avg_queue_us, 1),
        error_rate=_round(figures.error_rate, 5),
        p99_latency_ms=_round(figures.p99_ms, 3),
        observed_at=observed_at,
    )


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
