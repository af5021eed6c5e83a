"""int8 builds on ONNX Runtime (CPU): calibrated QDQ graphs, the gate by the task, what stays
in float, the fp32 baseline figures, and the failures that publish nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from modelops_builder.errors import BuildError
from modelops_builder.pipeline import build
from tests.support.builder_cases import assert_nothing_published, make_request, save_model
from tests.support.int8_cases import near_ties, save_set, task, trained_cnn


@pytest.fixture(scope="module")
def cnn_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """The trained quadrant CNN as ONNX, and its sets (calibration, labelled held-out)."""
    folder = tmp_path_factory.mktemp("int8")
    source, sha = save_model(trained_cnn(), "onnx", folder)
    return source, sha, folder


def _sets(folder: Path) -> dict[str, Any]:
    images, _ = task(64, seed=2)
    held, labels = task(200, seed=3)
    calibration = folder / "calibration.npz"
    labelled = folder / "labelled.npz"
    return {
        "calibration": {
            "data": {"sourceUri": str(calibration), "sha256": save_set(calibration, image=images)},
            "method": "percentile",
        },
        "labelledSet": {
            "sourceUri": str(labelled),
            "sha256": save_set(labelled, image=held, labels=labels),
        },
    }


def test_int8_engine_is_calibrated_gated_by_accuracy_and_compared_with_fp32(
    cnn_source: tuple[Path, str, Path], tmp_path: Path
) -> None:
    source, sha, folder = cnn_source
    store = tmp_path / "store"
    request = make_request(source, sha, store, precision="int8", **_sets(folder))
    result = build(request, local_source=True)
    manifest = result.manifest
    assert manifest.precision == "int8"
    graph = onnx.load(str(manifest.version_dir(result.entry) / "model.onnx"))
    ops = [n.op_type for n in graph.graph.node]
    assert "QuantizeLinear" in ops
    assert "DequantizeLinear" in ops
    quantization = manifest.quantization
    assert quantization is not None
    assert quantization.method == "percentile"
    assert quantization.calibration == f"sha256:{request.calibration.data.sha256}"  # type: ignore[union-attr]
    assert quantization.samples == 64
    assert quantization.quantized_nodes >= 2
    assert quantization.warning is None
    accuracy = manifest.accuracy
    assert accuracy is not None
    assert accuracy.passed
    assert accuracy.metric == "agreement"
    assert accuracy.samples == 200
    assert accuracy.agreement is not None
    assert accuracy.agreement >= 0.99
    assert accuracy.baseline_accuracy is not None
    assert accuracy.baseline_accuracy > 0.8
    assert accuracy.accuracy is not None
    assert accuracy.accuracy >= accuracy.baseline_accuracy - 0.01
    baseline = manifest.baseline
    assert baseline is not None
    assert baseline.precision == "fp32"
    assert baseline.engine_bytes > 0
    assert baseline.baseline_bytes > 0
    assert baseline.size_ratio == pytest.approx(
        baseline.engine_bytes / baseline.baseline_bytes, 1e-3
    )
    assert [s.shape for s in baseline.shapes] == ["opt"]
    assert result.summary.quantization == quantization
    # The same source in fp32: another key; int8 with another method: another key too.
    fp32 = make_request(source, sha, store, precision="fp32")
    entropy = request.model_copy(
        update={"calibration": request.calibration.model_copy(update={"method": "minmax"})}  # type: ignore[union-attr]
    )
    from modelops_builder.engines import plan_engine
    from modelops_builder.pipeline import compute_key

    keys = {compute_key(r, plan_engine(r)) for r in (request, fp32, entropy)}
    assert len(keys) == 3


def test_random_inputs_calibrate_with_a_warning_and_transformer_parts_stay_float(
    tmp_path: Path,
) -> None:
    """Without a set the builder's inputs calibrate (status warns); a transformer's LayerNorm,
    Softmax and output head stay in float and the report names them."""
    from tests.support.transformers import encoder

    model = encoder()
    source = tmp_path / "encoder.pt2"
    sha = model.save(source)
    request = make_request(
        source,
        sha,
        tmp_path / "store",
        format="exported-program",
        precision="int8",
        shapes=model.shapes(),
        minAgreement=0.8,
    )
    manifest = build(request, local_source=True).manifest
    quantization = manifest.quantization
    assert quantization is not None
    assert quantization.calibration == "builder"
    assert quantization.warning is not None
    assert "random inputs" in quantization.warning
    kept = " ".join(quantization.kept_float)
    assert "(LayerNormalization)" in kept
    assert "(Softmax)" in kept
    assert "(MatMul)" in kept or "(Gemm)" in kept  # the output head


def test_unquantizable_model_fails_the_gate_with_figures_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    source, sha = save_model(near_ties(), "onnx", tmp_path / "src")
    store = tmp_path / "store"
    with pytest.raises(BuildError) as failed:
        build(make_request(source, sha, store, precision="int8"), local_source=True)
    assert failed.value.reason == "AccuracyGateFailed"
    message = failed.value.message
    assert "int8 engine fails the gate: agreement" in message
    assert "< minAgreement 0.99" in message
    assert "worst: answer" in message
    assert "fp32 class" in message
    assert "spec.build.calibration.keepFloat" in message
    assert_nothing_published(store)


def test_a_calibration_set_that_does_not_fit_the_model_names_the_field(tmp_path: Path) -> None:
    source, sha = save_model(near_ties(), "onnx", tmp_path / "src")
    wrong = tmp_path / "wrong.npz"
    data = {"sourceUri": str(wrong), "sha256": save_set(wrong, x=np.zeros((4, 15), np.float32))}
    store = tmp_path / "store"
    request = make_request(source, sha, store, precision="int8", calibration={"data": data})
    with pytest.raises(BuildError) as failed:
        build(request, local_source=True)
    assert failed.value.reason == "InvalidDataSet"
    assert "spec.build.calibration.source: array 'x' has dims [15]" in failed.value.message
    missing = tmp_path / "missing.npz"
    data = {"sourceUri": str(missing), "sha256": save_set(missing, y=np.zeros((4, 16)))}
    request = make_request(source, sha, store, precision="int8", calibration={"data": data})
    with pytest.raises(BuildError, match=r"lacks input arrays \['x'\]"):
        build(request, local_source=True)
    request = make_request(
        source, sha, store, precision="int8", calibration={"keepFloat": ["NoSuchOp"]}
    )
    with pytest.raises(BuildError, match="keepFloat: \\['NoSuchOp'\\] name neither"):
        build(request, local_source=True)
    assert_nothing_published(store)


def test_the_cli_builds_int8_with_a_calibration_file(
    cnn_source: tuple[Path, str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from modelops_builder import cli
    from modelops_contract.manifest import read_manifest

    source, _, _ = cnn_source
    images, _ = task(32, seed=5)
    calibration = tmp_path / "cal.npz"
    sha = save_set(calibration, image=images)
    args = [str(source), "--precision", "int8", "--calibration", str(calibration)]
    args += ["--calibration-method", "entropy", "--profile-seconds", "0.05"]
    assert cli.main([*args, "--out", str(tmp_path / "store")]) == 0
    shown = capsys.readouterr().out
    assert "agreement with fp32" in shown
    assert "vs fp32" in shown
    (entry,) = (tmp_path / "store").iterdir()
    manifest = read_manifest(entry)
    assert manifest is not None
    assert manifest.precision == "int8"
    assert manifest.quantization is not None
    assert (manifest.quantization.calibration, manifest.quantization.method) == (
        f"sha256:{sha}",
        "entropy",
    )
