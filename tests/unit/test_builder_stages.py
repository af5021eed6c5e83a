"""Pure pieces of the builder stages: gate maths, profile batches, signatures, sources, plans."""

from __future__ import annotations

import numpy as np
import pytest

from modelops_builder import engines
from modelops_builder.engines import plan_engine
from modelops_builder.errors import BuildError
from modelops_builder.example_inputs import example_inputs
from modelops_builder.export import reconcile
from modelops_builder.fetch import split_s3
from modelops_builder.gate import compare, gate_batches, tolerances
from modelops_builder.profile import profile_batches
from modelops_contract.request import BuildRequest, TensorSig


def test_tolerances_default_by_precision_and_override() -> None:
    assert tolerances("fp32", None, None) == (1e-5, 1e-4)
    assert tolerances("fp16", None, None) == (1e-2, 1e-2)
    assert tolerances("fp16", 0.5, None) == (0.5, 1e-2)
    assert tolerances("fp32", 0.0, 0.0) == (0.0, 0.0)


def test_compare_uses_atol_plus_rtol_times_reference() -> None:
    want = np.array([1.0, 100.0], dtype=np.float32)
    ok = want + np.array([0.009, 0.9], dtype=np.float32)  # within 0.01 + 0.01 * |b|
    assert compare("y", ok, want, 0.01, 0.01)[2] is None
    bad = want + np.array([0.0, 1.2], dtype=np.float32)
    max_abs, max_rel, failure = compare("y", bad, want, 0.01, 0.01)
    assert failure is not None
    assert "1 of 2 values" in failure
    assert max_abs == pytest.approx(1.2, rel=1e-3)
    assert max_rel == pytest.approx(0.012, rel=1e-3)


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_always_fail(poison: float) -> None:
    got = np.array([1.0, poison], dtype=np.float32)
    failure = compare("y", got, np.array([1.0, 1.0]), 1e9, 1e9)[2]
    assert failure is not None
    assert "NaN/Inf" in failure


def test_shape_mismatch_fails() -> None:
    assert compare("y", np.zeros((2, 3)), np.zeros((2, 4)), 1, 1)[2] is not None


def test_batches() -> None:
    assert gate_batches(8, 4) == [1, 4, 8]
    assert gate_batches(1, 1) == [1]
    assert profile_batches(8, 8) == [1, 2, 4, 8]
    assert profile_batches(12, 6) == [1, 2, 4, 6, 8, 12]
    assert profile_batches(1, 1) == [1]


GRAPH = [TensorSig(name="x", data_type="FP32", dims=[3, -1])]


def test_reconcile_narrows_dynamic_dims_and_allows_fp16_io() -> None:
    spec = [TensorSig(name="x", data_type="FP32", dims=[3, 32])]
    assert reconcile("input", spec, GRAPH, fp16=False)[0].dims == [3, 32]
    assert reconcile("input", None, GRAPH, fp16=False) == GRAPH
    half = [TensorSig(name="x", data_type="FP16", dims=[3, -1])]
    assert reconcile("input", half, GRAPH, fp16=True)[0].data_type == "FP32"
    with pytest.raises(BuildError, match="spec says FP16 \\[3, -1\\], graph has FP32 \\[3, -1\\]"):
        reconcile("input", half, GRAPH, fp16=False)


@pytest.mark.parametrize("dims", [[4, 32], [3], [3, 32, 1]])
def test_reconcile_rejects_contradicting_dims(dims: list[int]) -> None:
    with pytest.raises(BuildError) as caught:
        reconcile("input", [TensorSig(name="x", data_type="FP32", dims=dims)], GRAPH, fp16=False)
    assert caught.value.reason == "SignatureMismatch"
    assert caught.value.kind == "input"


def test_example_inputs_are_seeded_and_typed() -> None:
    sigs = [
        TensorSig(name="ids", data_type="INT64", dims=[-1]),
        TensorSig(name="x", data_type="FP16", dims=[2]),
    ]
    first, again = example_inputs(sigs, 3, seed=1), example_inputs(sigs, 3, seed=1)
    assert first["ids"].dtype == np.int64
    assert first["ids"].shape == (3, 16)
    assert 0 <= first["ids"].min() <= first["ids"].max() < 4
    assert first["x"].dtype == np.float16
    np.testing.assert_array_equal(first["x"], again["x"])


def test_example_inputs_take_the_shape_plan_dims_and_attend_every_token() -> None:
    sigs = [
        TensorSig(name="input_ids", data_type="INT64", dims=[-1]),
        TensorSig(name="attention_mask", data_type="INT64", dims=[-1]),
    ]
    feeds = example_inputs(sigs, 2, dims={"input_ids": (5,), "attention_mask": (5,)})
    assert feeds["input_ids"].shape == feeds["attention_mask"].shape == (2, 5)
    # A random mask could hide a whole row, whose attention is NaN in any engine.
    assert (feeds["attention_mask"] == 1).all()


def test_split_s3() -> None:
    assert split_s3("s3://bucket/a/b.onnx") == ("bucket", "a/b.onnx")
    for bad in ["s3://bucket", "s3:///key", "s3://bucket/"]:
        with pytest.raises(BuildError):
            split_s3(bad)


def _request(**fields: object) -> BuildRequest:
    return BuildRequest.model_validate(
        {"sourceUri": "m.onnx", "sha256": "a" * 64, "store": "s"} | fields
    )


def test_plan_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(engines.NO_GPU_ENV, "1")
    assert plan_engine(_request()).engine == "onnxruntime"
    with pytest.raises(BuildError) as caught:
        plan_engine(_request(engine="tensorrt"))
    assert (caught.value.reason, caught.value.kind) == ("GpuUnavailable", "infrastructure")
    plan = plan_engine(_request(engine="tensorrt", allowFallback=True))
    assert plan.engine == "onnxruntime"
    assert plan.fallback is not None
    assert plan.fallback.startswith("GpuUnavailable")


def test_gpu_detection_on_this_machine() -> None:
    gpu = engines.detect_gpu()
    assert gpu.present == (gpu.why_absent is None)
