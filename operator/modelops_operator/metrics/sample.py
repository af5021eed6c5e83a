"""Parse one Triton /metrics page into a typed sample (PURE: text and timestamp in, data out).

Counters are summed over model versions, and over every model unless one model name is given.
Summary quantiles cannot be summed: across several models or versions the highest is kept, so a
latency gate errs on the strict side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

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


def parse_triton_metrics(text: str, timestamp: float, model: str | None = None) -> TritonSample:
    """Parse a /metrics page; counters of `model` only, or summed over all models when None."""
    per_model: dict[str, ModelCounters] = {}
    gpu: list[float] = []
    try:
        samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsParseError(f"not a Prometheus text page: {exc}") from exc
    for s in samples:
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
        counters = per_model.get(name, ModelCounters())
        per_model[name] = counters.plus(_one_sample(sample_name, s.labels, value))
    if model is not None and model not in per_model:
        raise MetricsParseError(f"model {model!r} not on the metrics page")
    if not per_model:
        raise MetricsParseError("no nv_inference_* figures on the metrics page")
    total = ModelCounters()
    for counters in per_model.values():
        total = total.plus(counters)
    # Triton reports utilisation as a fraction in [0, 1]; the API speaks percent.
    util = 100.0 * sum(gpu) / len(gpu) if gpu else None
    return TritonSample(timestamp, total, frozenset(per_model), util)


def _one_sample(name: str, labels: Mapping[str, str], value: float) -> ModelCounters:
    """A ModelCounters holding just this one sample (zero elsewhere), to be added up."""
    empty = ModelCounters()
    counter = _COUNTERS.get(name)
    if counter == "success":
        return replace(empty, success=value)
    if counter == "inference_count":
        return replace(empty, inference_count=value)
    if counter == "exec_count":
        return replace(empty, exec_count=value)
    if counter == "request_duration_us":
        return replace(empty, request_duration_us=value)
    if counter == "queue_duration_us":
        return replace(empty, queue_duration_us=value)
    if counter == "compute_infer_duration_us":
        return replace(empty, compute_infer_duration_us=value)
    if name == _FAILURE:
        return replace(empty, failures_by_reason={labels.get("reason", "OTHER"): value})
    if name == _PENDING:
        return replace(empty, pending=value)
    if name in (_REQUEST_SUMMARY, _QUEUE_SUMMARY) and "quantile" in labels:
        try:
            q = float(labels["quantile"])
        except ValueError:
            return empty
        if name == _REQUEST_SUMMARY:
            return replace(empty, request_quantiles_us={q: value})
        return replace(empty, queue_quantiles_us={q: value})
    return empty
