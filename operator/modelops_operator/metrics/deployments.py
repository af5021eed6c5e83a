"""Per-ModelDeployment series for dashboards and alerts (PURE: bodies in, metric families out).

Read from the bodies the operator watches (spec and the status it wrote) when Prometheus scrapes,
so nothing is kept per resource between scrapes and a deleted ModelDeployment's series vanish
with it. Labels: `namespace` and `modeldeployment` (the value of the pods' `modelops.dev/deployment`
label, so a query joins these series with the Triton and router series the chart's PodMonitors
relabel the same way), plus a bounded extra label (phase, role, revision in the traffic table,
condition, scaling metric, stage). Cardinality is a small constant per ModelDeployment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from ..api.status import Phase
from ..render.names import label_value

PHASES = frozenset(phase.value for phase in Phase)
ROLES = ("current", "candidate", "previous")
# An annotation that sets the p99 objective of the latency alert, in milliseconds; without it
# spec.rollout.canary.maxP99LatencyMs is the objective.
ANNOTATION_P99_OBJECTIVE = "modelops.dev/p99-objective-ms"
_REASON = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_STAGE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_STAGES = 16
KEY_CHARS = 12  # engine keys as labels: enough to tell engines apart on a dashboard
Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Deployment:
    """One watched ModelDeployment: its body, and its engine's build stages from engine.json."""

    namespace: str
    name: str
    body: Obj
    stage_seconds: Mapping[str, float] = field(default_factory=dict)


def _map(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def unix_time(text: Any) -> float | None:
    """An RFC 3339 time as Unix seconds; None when absent or not a time."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def p99_objective_ms(body: Obj) -> float | None:
    """The latency objective: the annotation when it is a positive number, else the canary's."""
    annotations = _map(_map(body.get("metadata")).get("annotations"))
    text = annotations.get(ANNOTATION_P99_OBJECTIVE)
    if isinstance(text, str):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value > 0:
            return value
    canary = _map(_map(_map(body.get("spec")).get("rollout")).get("canary"))
    return _number(canary.get("maxP99LatencyMs"))


def _scaling(spec: Obj, status: Obj) -> tuple[str, float | None, float | None] | None:
    """(metric, target, observed) of the autoscaler, observed as decide/scale_recommend reads it."""
    scaling = _map(spec.get("scaling"))
    metric = scaling.get("metric", "queueTime")
    if not scaling or metric not in ("queueTime", "inferencesPerSecond", "gpuUtilization"):
        return None
    figures = _map(status.get("metrics"))
    observed: float | None = None
    if metric == "queueTime":
        observed = _number(figures.get("avgQueueMicroseconds"))
    elif metric == "inferencesPerSecond":
        total = _number(figures.get("inferencesPerSecond"))
        ready = _number(status.get("readyReplicas")) or 0.0
        observed = None if total is None else total / max(1.0, ready)
    return str(metric), _number(scaling.get("target")), observed


class _Families:
    """The families being filled, keyed by metric name."""

    def __init__(self) -> None:
        self.by_name: dict[str, GaugeMetricFamily] = {}

    def add(self, name: str, doc: str, labels: Mapping[str, str], value: float | None) -> None:
        if value is None:
            return
        family = self.by_name.get(name)
        if family is None:
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            self.by_name[name] = family
        family.add_metric(list(labels.values()), value)


def _one(out: _Families, item: Deployment) -> None:
    body = item.body
    spec, status = _map(body.get("spec")), _map(body.get("status"))
    rollout = _map(spec.get("rollout"))
    base = {"namespace": item.namespace, "modeldeployment": label_value(item.name)}
    phase = str(status.get("phase")) if status.get("phase") in PHASES else "Pending"
    out.add("modelops_deployment_phase", "1 for the current phase.", {**base, "phase": phase}, 1)
    revision = _map(status.get("revision"))
    for role in ROLES:
        number = revision.get(role)
        if isinstance(number, int) and not isinstance(number, bool):
            out.add(
                "modelops_deployment_revision",
                "1 for each revision by role (current, candidate, previous): joins on revision.",
                {**base, "role": role, "revision": str(number)},
                1,
            )
    traffic = _map(status.get("traffic"))
    weights = [_map(w) for w in traffic.get("weights") or [] if isinstance(w, Mapping)]
    if not weights and isinstance(revision.get("current"), int):
        weights = [{"revision": revision["current"], "weight": 100}]
    for weight in weights[:16]:
        out.add(
            "modelops_deployment_weight",
            "Percent of client requests each revision gets (the table the operator wants).",
            {**base, "revision": str(weight.get("revision"))},
            _number(weight.get("weight")),
        )
    out.add(
        "modelops_deployment_traffic_version",
        "Version of the wanted traffic table (routers report the version they run).",
        base,
        _number(traffic.get("version")) if traffic else None,
    )
    for name, key, doc in (
        ("modelops_deployment_replicas", "replicas", "Serving pods of every revision."),
        ("modelops_deployment_ready_replicas", "readyReplicas", "Ready serving pods."),
    ):
        out.add(name, doc, base, _number(status.get(key)))
    scaling = _map(spec.get("scaling"))
    fixed = _number(_map(spec.get("serving")).get("replicas"))
    out.add(
        "modelops_deployment_max_replicas",
        "spec.scaling.maxReplicas (spec.serving.replicas without scaling).",
        base,
        _number(scaling.get("maxReplicas")) if scaling else fixed,
    )
    scaled = _scaling(spec, status)
    if scaled is not None:
        metric, target, observed = scaled
        labels = {**base, "metric": metric}
        out.add("modelops_deployment_scaling_target", "The autoscaler's target.", labels, target)
        out.add(
            "modelops_deployment_scaling_observed",
            "The autoscaler's metric as last observed (per replica where the target is).",
            labels,
            observed,
        )
    canary = _map(rollout.get("canary"))
    out.add(
        "modelops_deployment_max_error_rate",
        "spec.rollout.canary.maxErrorRate: the error ratio clients may see.",
        base,
        _number(canary.get("maxErrorRate", 0.01)),
    )
    objective = p99_objective_ms(body)
    out.add(
        "modelops_deployment_p99_objective_seconds",
        "The p99 latency objective (annotation modelops.dev/p99-objective-ms or maxP99LatencyMs).",
        base,
        None if objective is None else objective / 1000.0,
    )
    progress = _map(status.get("rollout"))
    if revision.get("candidate") is not None:
        out.add(
            "modelops_deployment_rollout_started_timestamp_seconds",
            "Unix time the candidate's rollout began (only while a candidate exists).",
            base,
            unix_time(progress.get("startedAt")),
        )
        out.add(
            "modelops_deployment_rollout_step",
            "Index of the canary step the candidate is at.",
            base,
            _number(progress.get("step")),
        )
    out.add(
        "modelops_deployment_progress_deadline_seconds",
        "spec.rollout.progressDeadlineSeconds.",
        base,
        _number(rollout.get("progressDeadlineSeconds", 600)),
    )
    for condition in status.get("conditions") or []:
        condition = _map(condition)
        kind, state = condition.get("type"), condition.get("status")
        if kind not in ("Ready", "EngineBuilt", "RolledOut", "Degraded"):
            continue
        reason = condition.get("reason")
        out.add(
            "modelops_deployment_condition_since_timestamp_seconds",
            "Unix time each condition took its status and reason.",
            {
                **base,
                "condition": str(kind),
                "status": str(state) if state in ("True", "False") else "Unknown",
                "reason": reason if isinstance(reason, str) and _REASON.match(reason) else "",
            },
            unix_time(condition.get("lastTransitionTime")),
        )
    _engine(out, base, _map(status.get("engine")), item.stage_seconds)


def _engine(
    out: _Families, base: Mapping[str, str], engine: Obj, stages: Mapping[str, float]
) -> None:
    key = engine.get("key")
    if not isinstance(key, str) or not key:
        return
    labels = {**base, "engine": key.removeprefix("sha256:")[:KEY_CHARS]}
    latency = _map(engine.get("latencyMs"))
    for quantile, field_name in (("0.5", "p50"), ("0.99", "p99")):
        value = _number(latency.get(field_name))
        out.add(
            "modelops_engine_profiled_latency_seconds",
            "The builder's profiled latency at the opt batch.",
            {**labels, "quantile": quantile},
            None if value is None else value / 1000.0,
        )
    out.add(
        "modelops_engine_profiled_throughput",
        "The builder's profiled inferences per second at the opt batch.",
        labels,
        _number(engine.get("throughput")),
    )
    accuracy = _map(engine.get("accuracy"))
    for kind, field_name in (("abs", "maxAbsError"), ("rel", "maxRelError")):
        out.add(
            "modelops_engine_accuracy_error",
            "The accuracy gate's largest error against the fp32 reference.",
            {**labels, "kind": kind},
            _number(accuracy.get(field_name)),
        )
    for stage, seconds in sorted(stages.items())[:MAX_STAGES]:
        if _STAGE.match(stage):
            out.add(
                "modelops_engine_stage_seconds",
                "Seconds each build stage took (engine.json).",
                {**labels, "stage": stage},
                _number(seconds),
            )


def deployment_families(deployments: Iterable[Deployment]) -> list[Metric]:
    """Every per-ModelDeployment family; families with no sample are left out."""
    out = _Families()
    for item in sorted(deployments, key=lambda d: (d.namespace, d.name)):
        _one(out, item)
    return list(out.by_name.values())
