"""int8: the spec's rules on both sides (CEL and pydantic), the engine key (fp32/fp16 keys fixed,
int8 keys moved by calibration and gate), the task gate's figures as tables."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from modelops_builder.task_gate import accuracy, agreement, judge_task, top_k_agreement
from modelops_contract.key import engine_key, int8_material
from modelops_contract.quantization import QuantizationReport
from modelops_contract.request import AccuracyReport, BuildRequest, BuildSummary
from modelops_operator.api import ModelDeploymentSpec, format_validation_error, rules
from modelops_operator.decide.build import desired_key
from modelops_operator.render.build_request import build_request
from modelops_operator.settings import Settings
from tests.support.crd import validate
from tests.unit.test_crd_cel import SHA, changed

DATA = {"uri": "https://data.example.com/calibration.npz", "sha256": SHA}
LABELLED = {
    "source": {"uri": "https://data.example.com/held.npz", "sha256": SHA},
    "minAccuracy": 0.5,
}


def build(**fields: Any) -> dict[str, Any]:
    """A ModelDeployment with these spec.build fields."""
    return changed(spec__build=fields)


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "calibration-without-int8",
        build(precision="fp16", calibration={"source": DATA}),
        "spec.build.calibration",
        rules.MSG_CALIBRATION_INT8,
    ),
    (
        "top-k-without-metric",
        build(precision="int8", accuracy={"topK": 3}),
        "spec.build.accuracy.topK",
        rules.MSG_TOP_K,
    ),
    (
        "min-agreement-with-max-abs",
        build(precision="int8", accuracy={"metric": "maxAbs", "minAgreement": 0.9}),
        "spec.build.accuracy.minAgreement",
        rules.MSG_MIN_AGREEMENT,
    ),
    (
        "accuracy-without-labels",
        build(precision="int8", accuracy={"maxAccuracyDrop": 0.02}),
        "spec.build.accuracy",
        rules.MSG_ACCURACY_LABELS,
    ),
    (
        "pvc-calibration-with-credentials",
        build(
            precision="int8",
            calibration={
                "source": {"uri": "pvc://data/cal.npz", "sha256": SHA, "credentialsSecret": "s"}
            },
        ),
        "spec.build.calibration.source.credentialsSecret",
        rules.MSG_CALIBRATION_CREDENTIALS,
    ),
]


@pytest.mark.parametrize(
    ("obj", "path", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_cross_field_rules_give_one_message_on_both_sides(
    obj: dict[str, Any], path: str, message: str
) -> None:
    assert validate(obj) == [f"{path}: {message}"]
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(obj["spec"])
    assert format_validation_error(info.value) == message


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (build(precision="int4"), "precision"),
        (build(precision="int8", calibration={"method": "kl"}), "method"),
        (build(precision="int8", accuracy={"metric": "f1"}), "metric"),
        (build(precision="int8", accuracy={"minAgreement": 1.5}), "minAgreement"),
        (build(precision="int8", calibration={"keepFloat": ["a b"]}), "keepFloat"),
    ],
)
def test_bounds_are_checked_by_both(obj: dict[str, Any], field: str) -> None:
    assert any(field in e for e in validate(obj))
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(obj["spec"])
    assert field in format_validation_error(info.value)


def test_a_full_int8_spec_is_accepted_and_maps_to_the_request() -> None:
    obj = changed(
        spec__build={
            "precision": "int8",
            "calibration": {"source": DATA, "method": "entropy", "keepFloat": ["/head/MatMul"]},
            "accuracy": {
                "metric": "topK",
                "topK": 3,
                "minAgreement": 0.98,
                "maxAccuracyDrop": 0.02,
            },
        },
        spec__validation=LABELLED,
    )
    assert validate(obj) == []
    spec = ModelDeploymentSpec.model_validate(obj["spec"])
    request = build_request(spec, Settings(), engine_key=None)
    assert request.precision == "int8"
    assert request.calibration is not None
    assert request.calibration.data is not None
    assert request.calibration.data.source_uri == DATA["uri"]
    assert request.calibration.method == "entropy"
    assert request.calibration.keep_float == ["/head/MatMul"]
    assert (request.metric, request.top_k, request.min_agreement) == ("topK", 3, 0.98)
    assert request.max_accuracy_drop == 0.02
    assert request.labelled_set is not None
    assert request.labelled_set.source_uri == LABELLED["source"]["uri"]  # type: ignore[index]


# Computed with the key function before int8 existed: cached fp32/fp16 engines keep their names.
BASE: dict[str, Any] = {
    "model_sha256": "a" * 64,
    "format": "onnx",
    "engine": "tensorrt",
    "precision": "fp16",
    "max_batch_size": 32,
    "opt_batch_size": 8,
    "inputs": [{"name": "x", "dataType": "FP32", "dims": [3, 224, 224]}],
    "gpu_product": "NVIDIA-H100-80GB-HBM3",
    "tensorrt_version": "11.4.0.106",
    "builder_version": "0.3.0",
}
FIXED = [
    (BASE, "sha256:36ef00bf724651bfc10ffbb109a917b1d70c5b64391cdcd59739072ccfe76fd9"),
    (
        BASE
        | {
            "engine": "onnxruntime",
            "precision": "fp32",
            "shapes": [{"name": "x", "max": [3, 224, 224]}],
        },
        "sha256:11ba67c7d547e55763e4232db741e5a7805b1f4ae9b35e5667c931b7cc31df0d",
    ),
]


@pytest.mark.parametrize(("fields", "key"), FIXED)
def test_fp32_and_fp16_keys_are_unchanged(fields: dict[str, Any], key: str) -> None:
    assert engine_key(**fields) == key
    # Calibration material never enters a non-int8 key, whatever is passed.
    assert engine_key(**fields, calibration={"data": "b" * 64, "method": "entropy"}) == key


def _request(**fields: Any) -> BuildRequest:
    wire = {"sourceUri": "https://m.example.com/m.onnx", "sha256": "a" * 64, "store": "/s"}
    return BuildRequest.model_validate(wire | {"precision": "int8"} | fields)


def _key(request: BuildRequest) -> str:
    return engine_key(
        **(BASE | {"precision": request.precision}), calibration=int8_material(request)
    )


DATA_SET = {"sourceUri": "https://d.example.com/c.npz", "sha256": "c" * 64}


@pytest.mark.parametrize(
    "fields",
    [
        {"calibration": {"data": DATA_SET}},
        {"calibration": {"method": "entropy"}},
        {"calibration": {"keepFloat": ["Gemm"]}},
        {"minAgreement": 0.95},
        {"metric": "topK"},
        {"maxAccuracyDrop": 0.05},
        {"labelledSet": DATA_SET},
    ],
)
def test_int8_keys_move_with_calibration_and_gate(fields: dict[str, Any]) -> None:
    assert _key(_request(**fields)) != _key(_request())


def test_int8_key_ignores_where_the_set_lives_and_a_staged_copy() -> None:
    elsewhere = DATA_SET | {"sourceUri": "s3://bucket/c.npz"}
    staged = DATA_SET | {"stagedSource": {"url": "http://store/sources/x", "token": "t"}}
    keys = {_key(_request(calibration={"data": d})) for d in (DATA_SET, elsewhere, staged)}
    assert len(keys) == 1


def test_operator_and_builder_compute_the_same_int8_key() -> None:
    from modelops_builder.engines import EnginePlan, GpuInfo
    from modelops_builder.pipeline import compute_key

    obj = build(precision="int8", calibration={"source": DATA, "method": "percentile"})
    spec = ModelDeploymentSpec.model_validate(obj["spec"])
    settings = Settings()
    request = build_request(spec, settings, engine_key=None)
    plan = EnginePlan("onnxruntime", GpuInfo(False))
    assert desired_key(spec, settings) == compute_key(request, plan)
    fp32 = ModelDeploymentSpec.model_validate(changed()["spec"])
    assert desired_key(fp32, settings) != desired_key(spec, settings)


# (reference scores, engine scores, agreement, top-2 agreement)
TABLE = [
    ([[3, 1, 0], [0, 2, 1]], [[3, 1, 0], [0, 2, 1]], 1.0, 1.0),
    ([[3, 1, 0], [0, 2, 1]], [[1, 3, 0], [0, 2, 1]], 0.5, 1.0),
    ([[3, 1, 0], [0, 2, 1]], [[0, 1, 3], [2, 0, 1]], 0.0, 0.0),
    # sequences: every position is one answer
    ([[[1, 0], [0, 1]], [[1, 0], [1, 0]]], [[[1, 0], [1, 0]], [[1, 0], [1, 0]]], 0.75, 1.0),
]


@pytest.mark.parametrize(("want", "got", "share", "top2"), TABLE)
def test_agreement_and_top_k_tables(want: Any, got: Any, share: float, top2: float) -> None:
    assert agreement(np.array(want), np.array(got))[0] == share
    assert top_k_agreement(np.array(want), np.array(got), 2)[0] == top2


def test_accuracy_table() -> None:
    scores = np.array([[3, 1, 0], [0, 2, 1], [0, 0, 5], [1, 0, 0]])
    assert accuracy(scores, np.array([0, 1, 2, 0])) == 1.0
    assert accuracy(scores, np.array([0, 1, 2, 2])) == 0.75
    assert accuracy(scores, np.array([1, 0, 0, 1])) == 0.0


@given(st.integers(1, 40), st.integers(2, 6), st.integers(0, 2**31))
def test_agreement_with_itself_is_one_and_top_k_never_below_agreement(
    samples: int, classes: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    want = rng.standard_normal((samples, classes))
    got = want + rng.standard_normal((samples, classes))
    assert agreement(want, want)[0] == 1.0
    for k in range(1, classes + 1):
        assert top_k_agreement(want, got, k)[0] >= agreement(want, got)[0] - 1e-12
    assert top_k_agreement(want, got, classes)[0] == 1.0


ELEMENTWISE = AccuracyReport(max_abs_error=0.1, max_rel_error=0.2)


def test_judge_passes_at_the_floor_and_fails_below_it_with_the_worst_answers() -> None:
    want = np.array([[3.0, 1.0]] * 99 + [[1.0, 3.0]])
    got = want.copy()
    verdict = judge_task(_request(minAgreement=0.99), ELEMENTWISE, want, got, None)
    assert verdict.failures == []
    assert verdict.report.agreement == 1.0
    got[0] = [1.0, 3.0]
    got[1] = [1.0, 3.0]
    verdict = judge_task(_request(minAgreement=0.99), ELEMENTWISE, want, got, None)
    assert verdict.failures == ["agreement 0.9800 < minAgreement 0.99"]
    assert verdict.report.passed is False
    assert verdict.worst.startswith("answer 0: fp32 class 0 (3), engine class 1 (3)")


def test_judge_by_labels_allows_the_drop_and_no_more() -> None:
    labels = np.array([0] * 100)
    want = np.array([[3.0, 1.0]] * 100)
    got = want.copy()
    got[:2] = [[1.0, 3.0]]
    report = judge_task(
        _request(maxAccuracyDrop=0.02, minAgreement=0.9), ELEMENTWISE, want, got, labels
    )
    assert report.failures == []
    assert (report.report.accuracy, report.report.baseline_accuracy) == (0.98, 1.0)
    got[2] = [1.0, 3.0]
    failed = judge_task(
        _request(maxAccuracyDrop=0.02, minAgreement=0.9), ELEMENTWISE, want, got, labels
    )
    assert failed.failures == ["accuracy 0.9700 vs fp32 1.0000: drop 0.0300 > maxAccuracyDrop 0.02"]
    floor = judge_task(_request(minAccuracy=0.99, minAgreement=0.9), ELEMENTWISE, want, got, labels)
    assert "accuracy 0.9700 < minAccuracy 0.99" in floor.failures


def test_summary_keeps_under_the_limit_with_many_kept_nodes() -> None:
    kept = [
        f"/encoder/layers.{i}/self_attn/MatMul_{j} (MatMul)" for i in range(40) for j in range(3)
    ]
    summary = BuildSummary(
        ok=True,
        key="sha256:" + "a" * 64,
        quantization=QuantizationReport(
            method="minmax",
            calibration="builder",
            samples=128,
            quantized_nodes=300,
            kept_float=kept,
        ),
    )
    line = summary.to_line()
    assert len(line.encode()) <= 4000
    parsed = BuildSummary.model_validate_json(line)
    assert parsed.quantization is not None
    assert parsed.quantization.kept_float[-1] == "... 116 more (engine.json)"
