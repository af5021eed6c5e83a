"""Transformers from PyTorch: tiny BERT-like and GPT-like ExportedPrograms with dynamic batch and
sequence axes, through the dynamo exporter, with shape ranges; and what goes wrong clearly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from modelops_builder.cli import EXIT_INPUT
from modelops_builder.engines import ORT_DISABLED_OPTIMIZERS
from modelops_builder.errors import BuildError
from modelops_builder.pipeline import build
from tests.support.builder_cases import (
    assert_nothing_published,
    make_request,
    run_job,
    save_model,
    save_torchscript,
    sha_of,
)
from tests.support.torch_models import tiny_models
from tests.support.transformers import SHAPES, Transformer, decoder, encoder

TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Both tiny transformers saved once as ExportedPrograms."""
    folder = tmp_path_factory.mktemp("transformers")
    return {
        t.name: (folder / f"{t.name}.pt2", t.save(folder / f"{t.name}.pt2"))
        for t in (encoder(), decoder())
    }


@pytest.mark.parametrize(("model", "precision"), [(encoder(), "fp32"), (decoder(), "fp16")])
def test_exported_program_builds_with_its_own_signature_and_shape_ranges(
    model: Transformer,
    precision: str,
    programs: dict[str, tuple[Path, str]],
    tmp_path: Path,
) -> None:
    path, sha = programs[model.name]
    request = make_request(
        path,
        sha,
        tmp_path / "store",
        format="exported-program",  # no inputs/outputs: the program carries its signature
        precision=precision,
        shapes=model.shapes(),
        modelName=model.name,
    )
    result = build(request, local_source=True)
    manifest = result.manifest
    assert [s.name for s in manifest.inputs] == list(model.inputs)
    assert all(s.dims == [-1] and s.data_type == "INT64" for s in manifest.inputs)
    assert [s.name for s in manifest.outputs] == ["output0"]
    # Every dynamic dim got its range, and the figures are recorded per shape.
    assert {r.name: (r.min, r.opt, r.max) for r in manifest.shape_ranges} == {
        n: ([SHAPES["min"]], [SHAPES["opt"]], [SHAPES["max"]]) for n in model.inputs
    }
    assert [f.shape for f in manifest.shapes] == ["min", "opt", "max"]
    for figures in manifest.shapes:
        assert figures.dims == {n: [SHAPES[figures.shape]] for n in model.inputs}
        assert figures.max_abs_error is not None
        assert figures.p50_ms is not None
        assert figures.p50_ms > 0
    assert result.summary.shapes == manifest.shapes
    assert len(result.summary.to_line().encode()) < 4000
    config = (result.entry / "repository" / model.name / "config.pbtxt").read_text()
    assert config.count("dims: -1") >= len(model.inputs)  # Triton accepts any length
    # The published engine against torch, at the min, opt and max lengths and beyond the gate's.
    version = manifest.version_dir(result.entry) / "model.onnx"
    session = ort.InferenceSession(str(version), disabled_optimizers=ORT_DISABLED_OPTIMIZERS)
    for seq in (SHAPES["min"], SHAPES["opt"], SHAPES["max"]):
        feeds = model.sample(3, seq, seed=seq)
        (got,) = session.run(None, feeds)
        np.testing.assert_allclose(
            got, model.reference(feeds), atol=TOLERANCE[precision], rtol=TOLERANCE[precision]
        )


def test_fp16_default_tolerances_fail_a_wrong_transformer(tmp_path: Path) -> None:
    # The same encoder with its logits scaled by 1e5, past fp16's range: right in fp32, wrong by
    # a third in fp16 (the scale becomes 65504). The correct one passes in test_examples.
    wrong = encoder(scale=1e5)
    path = tmp_path / "wrong.pt2"
    sha = wrong.save(path)
    store = tmp_path / "store"
    fields = {"format": "exported-program", "shapes": wrong.shapes()}
    assert build(make_request(path, sha, tmp_path / "ok", **fields), local_source=True).manifest
    with pytest.raises(BuildError) as caught:
        build(make_request(path, sha, store, precision="fp16", **fields), local_source=True)
    assert caught.value.reason == "AccuracyGateFailed"
    assert "values outside atol 0.01 + rtol 0.01" in caught.value.message
    assert_nothing_published(store)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (
            {"inputs": [{"name": "input_ids", "dataType": "INT32", "dims": [-1]},
                        {"name": "attention_mask", "dataType": "INT64", "dims": [-1]}]},
            "input 'input_ids': spec says INT32 [-1], the program has INT64 [-1]",
        ),
        (
            {"inputs": [{"name": "input_ids", "dataType": "INT64", "dims": [-1]}]},
            "inputs: spec names ['input_ids'], the program has ['input_ids', 'attention_mask']",
        ),
        (
            {"inputs": [{"name": "input_ids", "dataType": "INT64", "dims": [-1, 8]},
                        {"name": "attention_mask", "dataType": "INT64", "dims": [-1]}]},
            "spec says INT64 [-1, 8], the program has INT64 [-1]",
        ),
        (
            {"outputs": [{"name": "logits", "dataType": "FP32", "dims": [3]},
                         {"name": "probs", "dataType": "FP32", "dims": [3]}]},
            "outputs: spec lists 2 (logits, probs), the program returns 1",
        ),
    ],
)  # fmt: skip
def test_a_spec_signature_that_disagrees_with_the_program_is_named(
    spec: dict[str, object],
    fragment: str,
    programs: dict[str, tuple[Path, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, sha = programs["encoder"]
    store = tmp_path / "store"
    request = make_request(path, sha, store, format="exported-program", **spec)
    code, summary = run_job(request, capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "SignatureMismatch")
    assert fragment in (summary.message or "")
    assert_nothing_published(store)


def test_an_opt_shape_outside_min_max_is_refused(
    programs: dict[str, tuple[Path, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = programs["encoder"]
    store = tmp_path / "store"
    body = make_request(path, sha, store, format="exported-program").to_wire()
    body["shapes"] = [{"name": "input_ids", "min": [1], "opt": [100], "max": [24]}]
    code, summary = run_job(body, capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "InvalidRequest")
    assert "shapes 'input_ids': opt [100] is outside min [1] .. max [24]" in (summary.message or "")
    assert_nothing_published(store)


@pytest.mark.parametrize(
    ("shapes", "reason", "fragment"),
    [
        ([{"name": "ids", "max": [8, 8]}], "InvalidShapeRange", "has 2 dims"),
        ([{"name": "tokens", "max": [8]}], "InvalidShapeRange", "'tokens' is not an input"),
    ],
)
def test_a_range_that_does_not_fit_the_model_is_named(
    shapes: list[dict[str, object]],
    reason: str,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, sha = save_model(tiny_models()["tokens"], "onnx", tmp_path / "src")
    store = tmp_path / "store"
    code, summary = run_job(make_request(path, sha, store, shapes=shapes), capsys)
    assert (code, summary.reason) == (EXIT_INPUT, reason)
    assert fragment in (summary.message or "")
    assert "spec.build.shapes" in (summary.message or "")
    assert_nothing_published(store)


def test_tensorrt_needs_a_range_for_each_dynamic_dim(tmp_path: Path) -> None:
    from modelops_builder.export import to_onnx
    from modelops_builder.shapes import plan_shapes

    path, sha = save_model(tiny_models()["tokens"], "onnx", tmp_path / "src")
    model = to_onnx(make_request(path, sha, tmp_path / "s"), path, tmp_path)
    with pytest.raises(BuildError) as caught:
        plan_shapes(model.input_dims, None, require_ranges=True)
    assert caught.value.reason == "ShapeRangeRequired"
    assert "add {name: ids, max: [...]}" in caught.value.message


def test_torchscript_transformer_failure_says_to_save_an_exported_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    model = encoder()
    path = tmp_path / "encoder.pt"
    save_torchscript(
        model.module, tuple(torch.from_numpy(a) for a in model.sample(2, 8).values()), path
    )
    store = tmp_path / "store"
    inputs = [{"name": n, "dataType": "INT64", "dims": [-1]} for n in model.inputs]
    request = make_request(path, sha_of(path), store, format="torchscript", inputs=inputs)
    code, summary = run_job(request, capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "ExportFailed")
    message = summary.message or ""
    assert "set spec.model.format: exported-program" in message
    assert "torch.export.save" in message
    assert_nothing_published(store)
    assert json.loads(summary.to_line())["ok"] is False
