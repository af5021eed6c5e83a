"""The CPU build paths end to end: each tiny model, each format, fp32 and fp16, into a temp store.

Real torch export, real onnx checks, real ONNX Runtime engine, gate and profiler; the published
entry is then loaded back and compared with the torch module itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modelops_builder import cli
from modelops_builder.fetch import PVC_ROOT_ENV
from modelops_builder.job_output import TERMINATION_LOG_ENV
from modelops_builder.pipeline import BuildResult, build
from modelops_contract.manifest import read_manifest
from modelops_contract.request import BuildRequest
from tests.support.builder_cases import (
    FORMATS,
    make_request,
    output_signature,
    run_job,
    save_model,
    signature,
    store_contents,
)
from tests.support.torch_models import TinyModel, tiny_models

MODELS = tiny_models()
# Engine vs torch after the round trip: the gate's own tolerances, one ulp-ish looser for fp32.
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


class Stages:
    """A StageReporter that records what the pipeline reported."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def start(self, stage: str) -> None:
        self.events.append(("start", stage))

    def done(self, stage: str, seconds: float, detail: str) -> None:
        assert seconds >= 0
        self.events.append(("done", stage))


def _request(model: TinyModel, fmt: str, precision: str, tmp_path: Path) -> BuildRequest:
    path, sha = save_model(model, fmt, tmp_path / "src")
    # ONNX reads the signature from the graph; torch formats need it in the request.
    spec = {} if fmt == "onnx" else {"inputs": signature(model), "outputs": output_signature(model)}
    return make_request(
        path, sha, tmp_path / "store", format=fmt, precision=precision, modelName=model.name, **spec
    )


def _check_entry(result: BuildResult, model: TinyModel, precision: str) -> None:
    manifest = result.manifest
    entry = result.entry
    assert read_manifest(entry) == manifest
    assert manifest.engine == "onnxruntime"
    assert manifest.precision == precision
    assert [s.name for s in manifest.inputs] == list(model.inputs)
    assert [s.name for s in manifest.outputs] == model.outputs
    want_dims = signature(model)
    assert [s.dims for s in manifest.inputs] == [s["dims"] for s in want_dims]
    assert [p.batch for p in manifest.profile] == [1, 2, 4]
    assert all(p.p50_ms > 0 and p.p99_ms >= p.p50_ms and p.throughput > 0 for p in manifest.profile)
    assert {"fetch", "export", "engine", "gate", "profile"} <= set(manifest.stage_seconds)
    assert ("precision" in manifest.stage_seconds) == (precision == "fp16")
    assert manifest.accuracy is not None
    assert manifest.accuracy.passed
    summary = result.summary
    assert summary.ok
    assert summary.key == manifest.key
    assert not summary.cached
    assert summary.latency_ms is not None
    assert summary.throughput is not None
    version = entry / "repository" / model.name / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "model.py"]
    config = (entry / "repository" / model.name / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config
    assert "max_batch_size: 4" in config
    graph = onnx.load(str(version / "model.onnx"))
    floats = [i.data_type for i in graph.graph.initializer if i.data_type in (1, 10)]
    assert set(floats) == {10 if precision == "fp16" else 1}
    # The published engine against the torch module itself, at a batch the gate did not use.
    session = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = model.sample(3, seed=7)
    got = session.run(model.outputs, feeds)
    for name, value in zip(model.outputs, got, strict=True):
        np.testing.assert_allclose(
            value,
            model.reference(feeds)[name],
            atol=TOLERANCE[precision],
            rtol=TOLERANCE[precision],
        )


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(MODELS))
def test_every_cpu_path_publishes_a_servable_entry(
    name: str, fmt: str, precision: str, tmp_path: Path
) -> None:
    model = MODELS[name]
    stages = Stages()
    result = build(_request(model, fmt, precision, tmp_path), reporter=stages, local_source=True)
    _check_entry(result, model, precision)
    assert store_contents(tmp_path / "store") == [result.entry.name]
    done = [s for kind, s in stages.events if kind == "done"]
    assert done[0] == "plan"
    assert done[-1] == "publish"


def test_cache_hit_returns_without_fetching(tmp_path: Path) -> None:
    request = _request(MODELS["cnn"], "onnx", "fp16", tmp_path)
    first = build(request, local_source=True)
    Path(request.source_uri).unlink()  # a second fetch would now fail
    stages = Stages()
    again = build(request, reporter=stages, local_source=True)
    assert again.cached
    assert again.summary.cached
    assert again.manifest == first.manifest
    assert again.entry == first.entry
    assert [s for _, s in stages.events] == ["plan", "plan"]
    assert again.summary.latency_ms == first.summary.latency_ms


def test_signature_narrowing_and_custom_tolerances(tmp_path: Path) -> None:
    model = MODELS["tokens"]
    path, sha = save_model(model, "onnx", tmp_path / "src")
    fixed = [{"name": "ids", "dataType": "INT64", "dims": [12]}]
    request = make_request(path, sha, tmp_path / "store", inputs=fixed, atol=0.5, rtol=0.0)
    result = build(request, local_source=True)
    assert result.manifest.inputs[0].dims == [12]  # the request fixes what the graph leaves free
    assert result.manifest.accuracy is not None
    assert result.manifest.accuracy.atol == 0.5


def test_fp16_io_when_the_spec_asks_for_it(tmp_path: Path) -> None:
    model = MODELS["mlp"]
    path, sha = save_model(model, "onnx", tmp_path / "src")
    spec = {
        "inputs": [{"name": "x", "dataType": "FP16", "dims": [16]}],
        "outputs": [{"name": "y", "dataType": "FP16", "dims": [4]}],
    }
    result = build(
        make_request(path, sha, tmp_path / "store", precision="fp16", **spec), local_source=True
    )
    assert [s.data_type for s in result.manifest.inputs + result.manifest.outputs] == ["FP16"] * 2
    assert "TYPE_FP16" in (result.entry / "repository/model/config.pbtxt").read_text()


def test_job_mode_prints_only_the_summary_and_writes_the_termination_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_LOG_ENV, str(log))
    request = _request(MODELS["twoio"], "onnx", "fp32", tmp_path)
    code, summary = run_job(request, capsys)
    assert code == 0
    assert summary.ok
    assert summary.cached is False
    assert json.loads(log.read_text()) == summary.to_wire()
    assert len(log.read_text().encode()) < 4096
    file = tmp_path / "request.json"
    # The same request from a file, with the model on a mounted claim as a Job would see it.
    monkeypatch.setenv(PVC_ROOT_ENV, str(tmp_path))
    file.write_text(json.dumps(request.to_wire() | {"sourceUri": "pvc://src/twoio.onnx"}))
    assert cli.main(["--request", str(file)]) == 0
    assert capsys.readouterr().out.count("\n") == 1
    assert json.loads(log.read_text())["cached"] is True


def test_human_mode_computes_the_sha_and_shows_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = save_model(MODELS["mlp"], "onnx", tmp_path / "src")
    store = tmp_path / "store"
    argv = [str(path), "--precision", "fp16", "--max-batch-size", "4", "--opt-batch-size", "2"]
    code = cli.main([*argv, "--out", str(store), "--profile-seconds", "0.05"])
    captured = capsys.readouterr()
    assert code == 0
    assert sha in captured.out + captured.err
    assert "engine built" in captured.out
    assert "batch 2" in captured.out
    assert "publish" in captured.err
    ts_path, _ = save_model(MODELS["twoio"], "torchscript", tmp_path / "src")
    args = ["--format", "torchscript", "--input", "a:FP32:8", "--input", "b:fp32:8"]
    assert cli.main([str(ts_path), *args, "--out", str(store), "--profile-seconds", "0"]) == 0
    manifest = json.loads(next(store.glob("*/engine.json")).read_text())
    assert manifest["engine"] == "onnxruntime"
    assert len(store_contents(store)) == 2
