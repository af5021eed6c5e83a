"""Parse one Triton /metrics page into a typed sample (PURE: text and timestamp in, data out).

Counters are summed over model versions, and over every model unless one model name is given.
Summary quantiles cannot be summed: across several models or versions the highest is kept, so a
latency gate errs on the strict side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# Triton sample name -> ModelCounters field.
_COUNTERS = {
    "nv_inference_request_success": "success",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "exec_count",
    "nv_inference_request_duration_us": "request_duration_us",
    "nv_inference_queue_duration_us": "queue_duration_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_duration_us",
}
_FAILURE = "nv_inference_request_failure"
_PENDING = "nv_inference_pending_request_count"
_REQUEST_SUMMARY = "nv_inference_request_summary_us"
_QUEUE_SUMMARY = "nv_inference_queue_summary_us"
_GPU_UTIL = "nv_gpu_utilization"
# Bounds on what one page can make the operator hold: distinct failure reasons (the rest add up
# under OTHER_REASON), models, quantiles per summary, GPUs.
MAX_REASONS = 16
MAX_MODELS = 64
MAX_QUANTILES = 16
MAX_GPUS = 64
OTHER_REASON = "OTHER"


class MetricsParseError(ValueError):
    """The page is not Prometheus text, or holds no figures for the model asked for."""


@dataclass(frozen=True)
class ModelCounters:
    """Triton's cumulative counters and gauges for one model (or summed over models)."""

    success: float = 0.0
    failures_by_reason: Mapping[str, float] = field(default_factory=dict)
    inference_count: float = 0.0
    exec_count: float = 0.0
    request_duration_us: float = 0.0
    queue_duration_us: float = 0.0
    compute_infer_duration_us: float = 0.0
    pending: float = 0.0
    request_quantiles_us: Mapping[float, float] = field(default_factory=dict)
    queue_quantiles_us: Mapping[float, float] = field(default_factory=dict)

    @property
    def failure(self) -> float:
        """All failed requests, whatever the reason."""
        return sum(self.failures_by_reason.values())

    @property
    def requests(self) -> float:
        """Successful plus failed requests."""
        return self.success + self.failure

    def plus(self, other: ModelCounters) -> ModelCounters:
        """Counters and gauges added, quantiles merged by maximum."""
        reasons = dict(self.failures_by_reason)
        for reason, value in other.failures_by_reason.items():
            reasons[reason] = reasons.get(reason, 0.0) + value
        return ModelCounters(
            success=self.success + other.success,
            failures_by_reason=reasons,
            inference_count=self.inference_count + other.inference_count,
            exec_count=self.exec_count + other.exec_count,
            request_duration_us=self.request_duration_us + other.request_duration_us,
            queue_duration_us=self.queue_duration_us + other.queue_duration_us,
            compute_infer_duration_us=self.compute_infer_duration_us
            + other.compute_infer_duration_us,
            pending=self.pending + other.pending,
            request_quantiles_us=_max_merge(self.request_quantiles_us, other.request_quantiles_us),
            queue_quantiles_us=_max_merge(self.queue_quantiles_us, other.queue_quantiles_us),
        )


@dataclass(frozen=True)
class TritonSample:
    """One scrape of one Triton pod: counters for the selected model(s) at `timestamp`.

    `timestamp` is whatever clock the caller uses (seconds); two samples of one pod must use
    the same clock. `gpu_utilization` is a percentage (0-100) averaged over the pod's GPUs,
    None on a CPU-only server.
    """

    timestamp: float
    counters: ModelCounters
    models: frozenset[str]
    gpu_utilization: float | None = None


def _max_merge(a: Mapping[float, float], b: Mapping[float, float]) -> dict[float, float]:
    merged = dict(a)
    for q, v in b.items():
        merged[q] = max(merged.get(q, v), v)
    return merged


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def nv_lines(text: str) -> str:
    """Only Triton's own families (`nv_*` samples and their HELP/TYPE lines): whatever else a
    pod puts on its page costs nothing to parse."""
    kept = [
        line for line in text.splitlines() if line.startswith(("nv_", "# HELP nv_", "# TYPE nv_"))
    ]
    return "\n".join(kept) + "\n"


@dataclass
class _Totals:
    """One model's counters, added up in place (a page may hold thousands of samples)."""

    values: dict[str, float] = field(default_factory=dict)
    failures: dict[str, float] = field(default_factory=dict)
    request_quantiles: dict[float, float] = field(default_factory=dict)
    queue_quantiles: dict[float, float] = field(default_factory=dict)

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        counter = _COUNTERS.get(name) or ("pending" if name == _PENDING else None)
        if counter is not None:
            self.values[counter] = self.values.get(counter, 0.0) + value
        elif name == _FAILURE:
            reason = labels.get("reason", OTHER_REASON)
            if reason not in self.failures and len(self.failures) >= MAX_REASONS:
                reason = OTHER_REASON  # a page cannot make the operator keep unbounded labels
            self.failures[reason] = self.failures.get(reason, 0.0) + value
        elif name in (_REQUEST_SUMMARY, _QUEUE_SUMMARY) and "quantile" in labels:
            try:
                quantile = float(labels["quantile"])
            except ValueError:
                return
            target = self.request_quantiles if name == _REQUEST_SUMMARY else self.queue_quantiles
            if quantile in target or len(target) < MAX_QUANTILES:
                target[quantile] = max(target.get(quantile, value), value)

    def freeze(self) -> ModelCounters:
        numbers = [*self.values.values(), *self.failures.values()]
        if not all(math.isfinite(v) for v in numbers):
            raise MetricsParseError("a counter overflowed when summed")
        return ModelCounters(
            failures_by_reason=dict(self.failures),
            request_quantiles_us=dict(self.request_quantiles),
            queue_quantiles_us=dict(self.queue_quantiles),
            **self.values,
        )


def parse_triton_metrics(text: str, timestamp: float, model: str | None = None) -> TritonSample:
    """Parse a /metrics page; counters of `model` only, or summed over all models when None."""
    per_model: dict[str, _Totals] = {}
    gpu: list[float] = []
    try:
        families = list(text_string_to_metric_families(nv_lines(text)))
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsParseError(f"not a Prometheus text page: {exc}") from exc
    for family in families:
        for s in family.samples:
            value = _finite(float(s.value))
            if value is None:
                continue
            # prometheus_client names counter samples NAME_total whether or not the page did.
            sample_name = s.name.removesuffix("_total")
            if sample_name == _GPU_UTIL:
                gpu.append(value)
                continue
            name = s.labels.get("model")
            if name is None or (model is not None and name != model):
                continue
            if name not in per_model and len(per_model) >= MAX_MODELS:
                continue
            per_model.setdefault(name, _Totals()).add(sample_name, s.labels, value)
    if model is not None and model not in per_model:
        raise MetricsParseError(f"model {model!r} not on the metrics page")
    if not per_model:
        raise MetricsParseError("no nv_inference_* figures on the metrics page")
    total = ModelCounters()
    for counters in per_model.values():
        total = total.plus(counters.freeze())
    if not math.isfinite(total.success + total.failure):
        raise MetricsParseError("a counter overflowed when summed")
    # Triton reports utilisation as a fraction in [0, 1]; the API speaks percent.
    util = 100.0 * sum(gpu[:MAX_GPUS]) / len(gpu[:MAX_GPUS]) if gpu else None
    return TritonSample(timestamp, total, frozenset(per_model), util)
