"""Per-ModelDeployment series (metrics/deployments.py): fixed bodies in, exact samples out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modelops_operator.metrics.deployments import (
    Deployment,
    deployment_families,
    p99_objective_ms,
    unix_time,
)
from modelops_operator.observability import OperatorMetrics

Obj = dict[str, Any]
LONG = "a" * 80  # a name longer than a label value: hashed as the pods' label is


def body(**status: Any) -> Obj:
    return {
        "metadata": {"name": "m", "namespace": "ml", "annotations": {}},
        "spec": {
            "serving": {"replicas": 2},
            "scaling": {"maxReplicas": 4, "metric": "inferencesPerSecond", "target": 50},
            "rollout": {
                "progressDeadlineSeconds": 300,
                "canary": {"maxErrorRate": 0.02, "maxP99LatencyMs": 250},
            },
        },
        "status": status,
    }


ROLLING: Obj = {
    "phase": "RollingOut",
    "revision": {"current": 1, "candidate": 2, "previous": None},
    "rollout": {"step": 1, "startedAt": "2026-12-06T07:00:00Z"},
    "traffic": {
        "mode": "Router",
        "version": 7,
        "weights": [{"revision": 1, "weight": 50}, {"revision": 2, "weight": 50}],
    },
    "replicas": 3,
    "readyReplicas": 2,
    "metrics": {"inferencesPerSecond": 300.0},
    "conditions": [
        {
            "type": "EngineBuilt",
            "status": "True",
            "reason": "Built",
            "lastTransitionTime": "2026-12-06T06:59:00Z",
        },
        {
            "type": "Degraded",
            "status": "False",
            "reason": "bad reason!",
            "lastTransitionTime": "2026-12-06T06:58:00Z",
        },
        {"type": "Surprise", "status": "True", "lastTransitionTime": "2026-12-06T06:58:00Z"},
    ],
    "engine": {
        "key": "sha256:" + "ab" * 32,
        "latencyMs": {"p50": 1.5, "p99": 4.0},
        "throughput": 900.0,
        "accuracy": {"maxAbsError": 0.001},
    },
}


def samples(*deployments: Deployment) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()

    class Source:
        def collect(self) -> Any:
            return deployment_families(deployments)

    registry.register(Source())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (
            s.name,
            tuple(
                sorted(
                    (k, v) for k, v in s.labels.items() if k not in ("namespace", "modeldeployment")
                )
            ),
        ): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_rolling_out_deployment_exports_every_figure_the_dashboards_read() -> None:
    got = samples(Deployment("ml", "m", body(**ROLLING), {"build": 2.5, "Bad Stage": 1.0}))
    engine = ("engine", "ab" * 6)
    assert got == {
        ("modelops_deployment_phase", (("phase", "RollingOut"),)): 1.0,
        ("modelops_deployment_revision", (("revision", "1"), ("role", "current"))): 1.0,
        ("modelops_deployment_revision", (("revision", "2"), ("role", "candidate"))): 1.0,
        ("modelops_deployment_weight", (("revision", "1"),)): 50.0,
        ("modelops_deployment_weight", (("revision", "2"),)): 50.0,
        ("modelops_deployment_traffic_version", ()): 7.0,
        ("modelops_deployment_replicas", ()): 3.0,
        ("modelops_deployment_ready_replicas", ()): 2.0,
        ("modelops_deployment_max_replicas", ()): 4.0,
        ("modelops_deployment_scaling_target", (("metric", "inferencesPerSecond"),)): 50.0,
        # Per ready replica, as the autoscaler reads it.
        ("modelops_deployment_scaling_observed", (("metric", "inferencesPerSecond"),)): 150.0,
        ("modelops_deployment_max_error_rate", ()): 0.02,
        ("modelops_deployment_p99_objective_seconds", ()): 0.25,
        ("modelops_deployment_rollout_started_timestamp_seconds", ()): 1796540400.0,
        ("modelops_deployment_rollout_step", ()): 1.0,
        ("modelops_deployment_progress_deadline_seconds", ()): 300.0,
        (
            "modelops_deployment_condition_since_timestamp_seconds",
            (("condition", "EngineBuilt"), ("reason", "Built"), ("status", "True")),
        ): 1796540340.0,
        (
            "modelops_deployment_condition_since_timestamp_seconds",
            (("condition", "Degraded"), ("reason", ""), ("status", "False")),
        ): 1796540280.0,
        ("modelops_engine_profiled_latency_seconds", (engine, ("quantile", "0.5"))): 0.0015,
        ("modelops_engine_profiled_latency_seconds", (engine, ("quantile", "0.99"))): 0.004,
        ("modelops_engine_profiled_throughput", (engine,)): 900.0,
        ("modelops_engine_accuracy_error", (engine, ("kind", "abs"))): 0.001,
        ("modelops_engine_stage_seconds", (engine, ("stage", "build"))): 2.5,
    }


def test_a_ready_deployment_has_no_rollout_series_and_full_weight_on_its_revision() -> None:
    got = samples(Deployment("ml", "m", body(phase="Ready", revision={"current": 3})))
    assert got[("modelops_deployment_weight", (("revision", "3"),))] == 100.0
    assert not [k for k in got if k[0].startswith("modelops_deployment_rollout")]
    assert not [k for k in got if k[0] == "modelops_deployment_traffic_version"]


def test_labels_join_the_pods_label_and_an_unknown_phase_reads_pending() -> None:
    families = deployment_families([Deployment("ml", LONG, body(phase="Exploded"))])
    (phase,) = [f for f in families if f.name == "modelops_deployment_phase"]
    (sample,) = phase.samples
    assert sample.labels["phase"] == "Pending"
    assert sample.labels["modeldeployment"] != LONG
    assert len(sample.labels["modeldeployment"]) <= 63


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [("100", 100.0), ("0", 250.0), ("-5", 250.0), ("fast", 250.0), ("nan", 250.0), (None, 250.0)],
)
def test_the_p99_objective_annotation_wins_when_it_is_a_positive_number(
    annotation: str | None, expected: float
) -> None:
    md = body()
    if annotation is not None:
        md["metadata"]["annotations"]["modelops.dev/p99-objective-ms"] = annotation
    assert p99_objective_ms(md) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-06T07:00:00Z", 1796540400.0),
        ("2026-12-06T07:00:00", None),
        ("", None),
        ("yesterday", None),
        (12, None),
    ],
)
def test_unix_time(text: Any, expected: float | None) -> None:
    assert unix_time(text) == expected


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=4),
        max_leaves=30,
    )
)
def test_any_status_shape_exports_without_raising(status: Any) -> None:
    hostile = body()
    hostile["status"] = status
    for family in deployment_families([Deployment("ml", "m", hostile)]):
        assert len(family.samples) <= 40


def test_the_operator_exports_per_deployment_counters_and_forgets_them() -> None:
    metrics = OperatorMetrics()
    live: list[Deployment] = [Deployment("ml", "m", body(phase="Ready"))]
    metrics.export_deployments(lambda: live)
    metrics.count_event("ml", "m", "RolledBack")
    text = metrics.render().decode()
    assert 'modelops_deployment_phase{modeldeployment="m",namespace="ml",phase="Ready"} 1.0' in text
    events = (
        'modelops_deployment_events_total{modeldeployment="m",namespace="ml",reason="RolledBack"}'
    )
    assert f"{events} 1.0" in text
    live.clear()
    metrics.forget("ml", "m")
    assert 'modeldeployment="m"' not in metrics.render().decode()


def test_a_standby_exports_no_deployment_counters() -> None:
    metrics = OperatorMetrics()
    metrics.count_event("ml", "a", "Scaled")
    metrics.count_event("other", "b", "RolledBack")
    metrics.forget_all()
    assert "modelops_deployment_events_total{" not in metrics.render().decode()
    metrics.count_event("ml", "a", "Scaled")  # leading again: counted from 0
    assert (
        metrics.registry.get_sample_value(
            "modelops_deployment_events_total",
            {"namespace": "ml", "modeldeployment": "a", "reason": "Scaled"},
        )
        == 1.0
    )
