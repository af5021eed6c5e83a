"""The TensorRT build path against the fake `tensorrt` module (fake_tensorrt): every failure the
bindings can report becomes the right BuildError, and the builds that should work do.

The whole pipeline runs: fetch, export, fp16 conversion, build, the accuracy gate (the fake
engine runs the graph with ONNX Runtime, reading and writing torch CPU tensors by address),
profile, publish. What TensorRT itself would get wrong on a GPU (TF32 error) the fake imitates.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx.numpy_helper
import pytest

from modelops_builder import pipeline
from modelops_builder.engines import build_engine, plan_engine
from modelops_builder.errors import BuildError
from modelops_builder.tensorrt_engine import build_plan
from modelops_builder.tensorrt_logger import MESSAGE_LIMIT
from modelops_contract.request import BuildRequest
from tests.support.fake_tensorrt import BuilderFlag, read_cache
from tests.support.fake_tensorrt_engine import state
from tests.support.tensorrt_support import H100, install_gpu_node, model, onnx_file, trt_request


@pytest.fixture(autouse=True)
def gpu_node(monkeypatch: pytest.MonkeyPatch) -> None:
    install_gpu_node(monkeypatch)


def build(request: BuildRequest) -> pipeline.BuildResult:
    """A build from the test's local ONNX file (as `modelops-build MODEL` does)."""
    return pipeline.build(request, local_source=True)


def _cache_files(store: Path) -> list[Path]:
    return sorted((store / "_timing_cache").glob("*.cache"))


def test_fp32_engine_passes_the_fp32_gate_because_tf32_is_off(tmp_path: Path) -> None:
    """TF32 is on by default; left on, the fake's outputs carry TF32's ~1e-3 relative error and
    the fp32 gate (atol 1e-5, rtol 1e-4) fails the build."""
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    result = build(trt_request(source, sha, tmp_path / "store", precision="fp32"))
    (only,) = state.builds
    assert BuilderFlag.TF32 not in only["flags"]
    manifest = result.manifest
    assert manifest.engine == "tensorrt"
    assert manifest.model_file == "model.plan"
    assert manifest.tensorrt_version == "11.4.0.106"
    assert manifest.compute_capability == "9.0"
    assert manifest.versions["cuda"] == "13.4.3.001"
    assert manifest.versions["driver"] == "580.95.05"
    assert manifest.accuracy is not None
    assert manifest.accuracy.passed
    assert manifest.accuracy.max_rel_error < 1e-4
    assert [p.batch for p in manifest.profile] == [1, 2, 4, 8]
    config = (result.entry / "repository" / "model" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config


def test_fp16_build_keeps_tf32_for_its_fp32_parts(tmp_path: Path) -> None:
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    build(trt_request(source, sha, tmp_path / "store", precision="fp16"))
    assert BuilderFlag.TF32 in state.builds[0]["flags"]


def test_fp16_is_checked_on_the_parsed_network(tmp_path: Path) -> None:
    """The engine inspector of a Myelin engine lists only FP32 boundary tensors; the build must
    not call that PrecisionNotApplied. The parsed network's layer types are the truth."""
    source, sha = onnx_file(model("cnn"), tmp_path / "src")
    result = build(trt_request(source, sha, tmp_path / "store", precision="fp16"))
    assert result.manifest.precision == "fp16"
    assert result.manifest.accuracy is not None
    assert result.manifest.accuracy.passed


def test_fp16_request_of_an_fp32_graph_fails_before_building(tmp_path: Path) -> None:
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    request = trt_request(source, sha, tmp_path / "store", precision="fp16")
    with pytest.raises(BuildError) as caught:
        build_plan(request, source, tmp_path, H100, None, {})
    assert caught.value.reason == "PrecisionNotApplied"
    assert state.builds == []  # no minutes spent on a build that cannot pass


def test_the_profile_tensorrt_gets_is_the_requested_shape_range(tmp_path: Path) -> None:
    tokens = model("tokens")  # int64 ids with a dynamic sequence axis
    source, sha = onnx_file(tokens, tmp_path / "src")
    request = trt_request(
        source, sha, tmp_path / "store", shapes=[{"name": "ids", "opt": [16], "max": [32]}]
    )
    result = build(request)
    assert state.builds[0]["profile"] == {"ids": ((1, 1), (4, 16), (8, 32))}
    assert result.manifest.shape_ranges


def test_a_dynamic_dim_without_a_range_is_refused_before_building(tmp_path: Path) -> None:
    source, sha = onnx_file(model("tokens"), tmp_path / "src")
    with pytest.raises(BuildError) as caught:
        build(trt_request(source, sha, tmp_path / "store"))
    assert caught.value.reason == "ShapeRangeRequired"
    assert "{name: ids, max: [...]}" in caught.value.message
    assert state.builds == []


def test_second_request_is_a_store_hit_and_the_timing_cache_was_written(tmp_path: Path) -> None:
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    store = tmp_path / "store"
    first = build(trt_request(source, sha, store))
    (cache,) = _cache_files(store)
    assert "11.4.0.106" in cache.name  # the full version: another build has other timings
    assert read_cache(cache.read_bytes()) == {"device": state.device, "entries": 1}
    again = build(trt_request(source, sha, store))
    assert again.cached
    assert again.entry == first.entry
    assert len(state.builds) == 1


@pytest.mark.parametrize(
    "blob",
    [
        b'FAKECACHE:{"device": "NVIDIA H100 80GB HBM3 MIG 1g.10gb/9.0", "entries": 7}',
        b"half a cache from a killed build",
    ],
    ids=["other-device", "corrupt"],
)
def test_a_timing_cache_that_does_not_fit_is_replaced(tmp_path: Path, blob: bytes) -> None:
    """set_timing_cache returns False for another device's cache (create_timing_cache None for
    a corrupt one): the build starts a fresh cache instead of crashing on get_timing_cache()."""
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    store = tmp_path / "store"
    (store / "_timing_cache").mkdir(parents=True)
    target = store / "_timing_cache" / "NVIDIA_H100_80GB_HBM3-trt11.4.0.106.cache"
    target.write_bytes(blob)
    result = build(trt_request(source, sha, store))
    assert result.manifest.accuracy is not None
    assert _cache_files(store) == [target]
    assert read_cache(target.read_bytes()) == {"device": state.device, "entries": 1}


def test_build_failure_carries_tensorrt_s_own_words_bounded(tmp_path: Path) -> None:
    state.build_error = "Could not find any implementation for node /Gemm " + "x" * 5000
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    with pytest.raises(BuildError) as caught:
        build(trt_request(source, sha, tmp_path / "store"))
    error = caught.value
    assert (error.reason, error.kind) == ("EngineBuildFailed", "input")
    assert "Could not find any implementation for node /Gemm" in error.message
    assert "see log" not in error.message
    assert len(error.message) < MESSAGE_LIMIT + 100


def test_a_driver_too_old_for_the_image_is_gpu_unavailable(tmp_path: Path) -> None:
    """createInferBuilder -> nullptr -> pybind11 TypeError: not an InternalError."""
    state.no_cuda = True
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    request = trt_request(source, sha, tmp_path / "store")
    with pytest.raises(BuildError) as caught:
        build(request)
    error = caught.value
    assert (error.reason, error.kind) == ("GpuUnavailable", "infrastructure")
    assert "NVIDIA H100 80GB HBM3 has NVIDIA driver 580.95.05" in error.message
    assert "CUDA 13.4.3.001" in error.message
    assert "CUDA initialization failure" in error.message


def test_the_parser_s_errors_reach_the_user(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    request = trt_request(bad, "0" * 64, tmp_path / "store")
    with pytest.raises(BuildError) as caught:
        build_plan(request, bad, tmp_path, H100, None, {})
    assert caught.value.reason == "EngineBuildFailed"
    assert "Failed to parse ONNX model" in caught.value.message


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        ({"x": ((1, 16), (8, 16), (4, 16))}, "Shape provided for max is inconsistent"),
        ({}, "rejected the optimisation profile"),
    ],
    ids=["set_shape-raises", "add-returns-minus-one"],
)
def test_profile_rejections_are_build_errors(
    tmp_path: Path, shapes: dict[str, tuple[tuple[int, ...], ...]], expected: str
) -> None:
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    request = trt_request(source, sha, tmp_path / "store")
    with pytest.raises(BuildError) as caught:
        build_plan(request, source, tmp_path, H100, None, shapes)  # type: ignore[arg-type]
    assert caught.value.reason == "EngineBuildFailed"
    assert expected in caught.value.message


def test_build_engine_hands_the_profile_to_tensorrt(tmp_path: Path) -> None:
    from modelops_contract.request import TensorSig

    tokens = model("tokens")
    source, sha = onnx_file(tokens, tmp_path / "src")
    request = trt_request(source, sha, tmp_path / "store")
    inputs = [TensorSig(name="ids", data_type="INT64", dims=[-1])]
    version_dir = tmp_path / "v"
    version_dir.mkdir()
    plan = plan_engine(request)
    profile = {"ids": ((1, 2), (4, 16), (8, 32))}
    built = build_engine(plan, request, source, inputs, version_dir, None, profile)
    assert built.engine == "tensorrt"
    assert state.builds[-1]["profile"] == {"ids": ((1, 2), (4, 16), (8, 32))}


def test_a_cluster_build_starts_from_the_stores_timing_cache_and_its_publisher_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split as in the build Job: the init container copies the tenant's sealed timing cache
    into a folder, the build step starts from it and leaves the new one in its output; the
    publishing step, the only one with the store, seals it back under the request's name."""
    from modelops_builder.fetch import PVC_ROOT_ENV
    from modelops_builder.publish import publish_output
    from modelops_builder.timing_cache import fetch_main
    from modelops_contract.integrity import MAC_KEY_ENV
    from tests.support.engine_store import TEST_MAC_KEY

    monkeypatch.setenv(MAC_KEY_ENV, TEST_MAC_KEY)
    monkeypatch.setenv(PVC_ROOT_ENV, str(tmp_path))
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    store = tmp_path / "store"
    request = trt_request(source, sha, store, sourceUri=f"pvc://src/{source.name}")
    key = pipeline.compute_key(request, plan_engine(request))
    name = "_timing_cache/ml/NVIDIA_H100_80GB_HBM3-trt11.4.0.106.cache"
    request = request.model_copy(update={"engine_key": key, "timing_cache": name})
    for run in ("first", "second"):
        out, caches = tmp_path / f"out-{run}", tmp_path / f"caches-{run}"
        assert fetch_main(["--request", request.model_dump_json(), "--into", str(caches)]) == 0
        pipeline.produce(request, out, timing_cache=caches)
        assert (out / pipeline.TIMING_CACHE_OUTPUT).is_file()
        summary = publish_output(request, out)
        assert summary.ok
        assert summary.cached is (run == "second")
    cache = store / name
    assert (store / f"{name}.mac").is_file()
    # The second build started from the first one's cache: one more entry in it.
    assert read_cache(cache.read_bytes()) == {"device": state.device, "entries": 2}


def test_int8_builds_the_calibrated_qdq_graph_as_a_strongly_typed_network(tmp_path: Path) -> None:
    """Explicit quantization: the builder's Q/DQ nodes carry the scales (signed int8, zero point
    0, which is all TensorRT takes; the fake parser refuses uint8 as TensorRT's does)."""
    source, sha = onnx_file(model("cnn"), tmp_path / "src")
    result = build(trt_request(source, sha, tmp_path / "store", precision="int8"))
    (only,) = state.builds
    graph = onnx.load_from_string(only["spec"].onnx_bytes).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    zero_points = [i for i in graph.initializer if i.name.endswith("_zero_point")]
    assert zero_points
    assert {z.data_type for z in zero_points} == {onnx.TensorProto.INT8}
    assert all(not onnx.numpy_helper.to_array(z).any() for z in zero_points)
    manifest = result.manifest
    assert (manifest.engine, manifest.precision, manifest.model_file) == (
        "tensorrt",
        "int8",
        "model.plan",
    )
    assert manifest.quantization is not None
    assert manifest.quantization.quantized_nodes > 0
    assert manifest.accuracy is not None
    assert manifest.accuracy.metric == "agreement"
    assert manifest.baseline is not None
    assert manifest.baseline.runtime.startswith("onnxruntime fp32")


def test_int8_request_of_a_graph_without_qdq_fails_before_building(tmp_path: Path) -> None:
    source, sha = onnx_file(model("mlp"), tmp_path / "src")
    request = trt_request(source, sha, tmp_path / "store", precision="int8")
    with pytest.raises(BuildError) as caught:
        build_plan(request, source, tmp_path, H100, None, {})
    assert caught.value.reason == "PrecisionNotApplied"
    assert "0 INT8 quantize" in caught.value.message
    assert state.builds == []
