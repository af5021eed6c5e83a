"""The pydantic API models: defaults, the wire form, condition helpers, round trips."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops_operator.api import (
    Condition,
    ConditionStatus,
    ConditionType,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Phase,
    ScaleRecord,
    find_condition,
    is_true,
    set_condition,
)
from tests.support.crd import validate

SHA = "ab" * 32
MINIMAL = {"model": {"source": {"uri": "https://models.example.com/r.onnx", "sha256": SHA}}}
T0, T1, T2 = "2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z", "2025-01-01T00:02:00Z"


def test_spec_defaults() -> None:
    spec = ModelDeploymentSpec.model_validate(MINIMAL)
    assert spec.model.format == "onnx"
    assert spec.model.inputs is None
    assert (spec.build.engine, spec.build.precision) == ("onnxruntime", "fp32")
    assert spec.build.max_batch_size == 8
    assert spec.build.opt_batch_size is None
    assert spec.build.effective_opt_batch_size == 8
    assert spec.serving.replicas == 1
    assert spec.serving.instances_per_replica == 1
    assert spec.serving.dynamic_batching is not None
    assert spec.serving.dynamic_batching.max_queue_delay_microseconds == 100
    assert spec.scaling is None
    assert spec.rollout.strategy == "Canary"
    assert spec.rollout.canary.steps == [10, 50, 100]
    assert spec.rollout.canary.analysis_interval_seconds == 15
    assert spec.rollout.canary.failure_threshold == 2
    assert spec.rollout.canary.max_error_rate == 0.01
    assert spec.rollout.canary.max_p99_latency_ms is None
    assert spec.rollout.progress_deadline_seconds == 600


def test_scaling_defaults_and_opt_batch() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {**MINIMAL, "scaling": {"maxReplicas": 3, "target": 10}, "build": {"optBatchSize": 4}}
    )
    assert spec.scaling is not None
    assert (spec.scaling.min_replicas, spec.scaling.metric) == (1, "queueTime")
    assert spec.scaling.scale_down_delay_seconds == 120
    assert spec.build.effective_opt_batch_size == 4


def test_status_defaults() -> None:
    status = ModelDeploymentStatus()
    assert status.phase == Phase.PENDING
    assert status.conditions == []
    assert status.history == []
    assert (status.replicas, status.ready_replicas) == (0, 0)
    assert status.to_wire() == {
        "phase": "Pending",
        "conditions": [],
        "revision": {},
        "history": [],
        "replicas": 0,
        "readyReplicas": 0,
    }


def test_to_wire_is_camel_case_without_nones_and_round_trips() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {**MINIMAL, "build": {"engine": "tensorrt", "gpu": {"product": "NVIDIA-A100"}}}
    )
    wire = spec.to_wire()
    assert wire["build"]["maxBatchSize"] == 8
    assert wire["serving"]["dynamicBatching"] == {"maxQueueDelayMicroseconds": 100}
    assert "optBatchSize" not in wire["build"]
    assert "scaling" not in wire
    assert "credentialsSecret" not in wire["model"]["source"]
    assert ModelDeploymentSpec.model_validate(wire) == spec
    obj = {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment"}
    assert validate({**obj, "metadata": {"name": "a"}, "spec": wire}) == []


def test_snake_case_names_are_accepted_too() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {**MINIMAL, "build": {"max_batch_size": 4, "opt_batch_size": 2}}
    )
    assert spec.build.to_wire()["optBatchSize"] == 2


def test_scale_record_uses_from_on_the_wire() -> None:
    record = ScaleRecord.model_validate({"from": 1, "to": 3, "reason": "q", "time": T0})
    assert record.from_ == 1
    assert record.to_wire() == {"from": 1, "to": 3, "reason": "q", "time": T0}
    assert ScaleRecord(from_=2, to=1, reason="idle", time=T0).to_wire()["from"] == 2
    status = ModelDeploymentStatus.model_validate({"lastScale": record.to_wire()})
    assert status.last_scale == record


def test_model_deployment_from_body() -> None:
    body = {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "r", "namespace": "ml", "generation": 3, "resourceVersion": "9"},
        "spec": MINIMAL,
    }
    md = ModelDeployment.from_body(body)
    assert (md.metadata.name, md.metadata.generation, md.metadata.resource_version) == (
        "r",
        3,
        "9",
    )
    assert md.status.phase == Phase.PENDING


def test_set_condition_keeps_transition_time_unless_status_flips() -> None:
    conds = set_condition([], "Ready", ConditionStatus.FALSE, "Building", "building", T0, 1)
    assert conds[0].last_transition_time == T0
    same = set_condition(conds, "Ready", "False", "StillBuilding", "still", T1, 2)
    assert len(same) == 1
    assert same[0].last_transition_time == T0  # no flip: time kept, the rest replaced
    assert (same[0].reason, same[0].message, same[0].observed_generation) == (
        "StillBuilding",
        "still",
        2,
    )
    flipped = set_condition(same, "Ready", ConditionStatus.TRUE, "Serving", "ok", T2)
    assert flipped[0].last_transition_time == T2
    assert is_true(flipped, "Ready")
    assert not is_true(same, "Ready")
    assert conds[0].reason == "Building"  # the input list is not mutated


def test_set_condition_sorts_and_replaces_by_type() -> None:
    conds: list[Condition] = []
    for ctype in (ConditionType.READY, ConditionType.DEGRADED, ConditionType.ENGINE_BUILT):
        conds = set_condition(conds, ctype, "Unknown", "Init", "", T0)
    conds = set_condition(conds, ConditionType.DEGRADED, "True", "RolledBack", "r3 failed", T1)
    assert [c.type for c in conds] == ["Degraded", "EngineBuilt", "Ready"]
    degraded = find_condition(conds, "Degraded")
    assert degraded is not None
    assert degraded.last_transition_time == T1
    assert find_condition(conds, "RolledOut") is None
    assert not is_true(conds, "RolledOut")


# Hypothesis: any spec built from valid parts survives to_wire() and is accepted by the CRD.
names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
tensors = st.lists(
    st.fixed_dictionaries(
        {
            "name": names,
            "dataType": st.sampled_from(["FP32", "FP16", "INT64", "BOOL"]),
            "dims": st.lists(st.one_of(st.just(-1), st.integers(1, 4096)), max_size=4),
        }
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda t: t["name"],
)
uris = st.sampled_from(
    ["https://m.example.com/a.onnx", "s3://bucket-1/k/m.pt", "pvc://models/m.pt"]
)


@st.composite
def shape_range(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A valid min <= opt <= max range for one input (each bound but max optional)."""
    high = draw(st.lists(st.integers(1, 4096), min_size=1, max_size=8))
    mid = [draw(st.integers(1, h)) for h in high]
    low = [draw(st.integers(1, m)) for m in mid]
    shape: dict[str, Any] = {"name": name, "max": high}
    if draw(st.booleans()):
        shape["opt"] = mid
    if draw(st.booleans()):
        shape["min"] = low
    return shape


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec in wire form."""
    max_batch = draw(st.integers(1, 4096))
    steps = [*sorted(draw(st.sets(st.integers(1, 99), max_size=4))), 100]
    engine = draw(st.sampled_from(["tensorrt", "onnxruntime"]))
    metric = draw(st.sampled_from(["queueTime", "inferencesPerSecond", "gpuUtilization"]))
    gpu = engine == "tensorrt" or metric == "gpuUtilization"
    low = draw(st.integers(1, 1000))
    build: dict[str, Any] = {"engine": engine, "precision": draw(st.sampled_from(["fp32", "fp16"]))}
    build |= {"maxBatchSize": max_batch, "optBatchSize": draw(st.integers(1, max_batch))}
    if gpu:
        build["gpu"] = {"product": "NVIDIA-H100-80GB-HBM3"}
    inputs = draw(tensors)
    ranged = draw(st.lists(st.sampled_from(inputs), unique_by=lambda t: t["name"], max_size=3))
    if ranged:
        build["shapes"] = [draw(shape_range(t["name"])) for t in ranged]
    return {
        "model": {
            "source": {"uri": draw(uris), "sha256": SHA},
            "format": draw(st.sampled_from(["onnx", "torchscript", "exported-program"])),
            "inputs": inputs,
            "outputs": draw(tensors),
        },
        "build": build,
        "serving": {
            "replicas": draw(st.integers(0, 1000)),
            "resources": {"limits": {"cpu": draw(st.sampled_from([1, "500m", "2"]))}},
        },
        "scaling": {
            "minReplicas": low,
            "maxReplicas": draw(st.integers(low, 1000)),
            "metric": metric,
            "target": draw(st.floats(1, 100 if metric == "gpuUtilization" else 1e9)),
        },
        "rollout": {"strategy": "Canary", "canary": {"steps": steps}},
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_valid_specs_round_trip_and_pass_the_crd(wire: dict[str, Any]) -> None:
    spec = ModelDeploymentSpec.model_validate(wire)
    again = ModelDeploymentSpec.model_validate(spec.to_wire())
    assert again == spec
    assert again.to_wire() == spec.to_wire()
    obj = {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment"}
    assert validate({**obj, "metadata": {"name": "h"}, "spec": spec.to_wire()}) == []


def test_per_shape_figures_reach_status_and_pass_the_crd() -> None:
    from modelops_contract.request import BuildSummary, ShapeFigures
    from modelops_operator.decide.build_results import engine_from_summary

    summary = BuildSummary(
        ok=True,
        key="sha256:" + "ab" * 32,
        shapes=[
            ShapeFigures(shape=label, dims={"input_ids": [n], "attention_mask": [n]}, batch=4,
                         max_abs_error=1e-6, p50_ms=0.2 * n, p99_ms=0.3 * n, throughput=100.0)
            for label, n in (("min", 1), ("opt", 32), ("max", 128))
        ],
    )  # fmt: skip
    engine = engine_from_summary(summary)
    assert engine.shapes is not None
    assert [s.shape for s in engine.shapes] == ["min", "opt", "max"]
    wire = engine.to_wire()
    assert wire["shapes"][2]["dims"] == {"input_ids": [128], "attention_mask": [128]}
    assert wire["shapes"][1]["latencyMs"] == {"p50": 6.4, "p99": 9.6}
    obj = {"apiVersion": "modelops.dev/v1alpha1", "kind": "ModelDeployment"}
    body = {**obj, "metadata": {"name": "h"}, "spec": MINIMAL, "status": {"engine": wire}}
    assert validate(body) == []
