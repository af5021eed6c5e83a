"""`modelops dev`: the example builds, serves on the real Triton and answers; bad files exit 2."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from modelops_cli.dev import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    load_deployment,
    resolve_source,
    run_dev,
    to_build_request,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "cpu-onnxruntime.yaml"


def _run(path: Path, store: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = run_dev(path, store=store, once=True, console=Console(file=out, width=200))
    return code, out.getvalue()


def _variant(tmp_path: Path, edit: dict[str, object]) -> Path:
    """A copy of the example (with its model beside it) with `edit` merged into spec.build etc."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    for dotted, value in edit.items():
        *parents, leaf = dotted.split(".")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    shutil.copytree(EXAMPLES / "models", tmp_path / "models")
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.triton
def test_example_builds_serves_and_answers_then_hits_the_cache(tmp_path: Path) -> None:
    code, out = _run(EXAMPLE, tmp_path / "store")
    assert code == EXIT_OK, out
    assert "inference ok" in out
    assert re.search(r"http://127\.0\.0\.1:\d+/v2/models/tiny-mlp/infer", out), out
    assert re.search(r"gRPC\W+127\.0\.0\.1:\d+", out), out
    assert re.search(r"http://127\.0\.0\.1:\d+/metrics", out), out
    assert "accuracy" in out
    assert "throughput" in out
    assert "cached" not in out
    code, again = _run(EXAMPLE, tmp_path / "store")
    assert code == EXIT_OK, again
    assert "cached (engine-key hit)" in again


def test_relative_file_uri_resolves_against_the_yaml_folder(tmp_path: Path) -> None:
    deployment = load_deployment(EXAMPLE)
    path = resolve_source(deployment.spec.model.source.uri, deployment.base_dir)
    assert path == (EXAMPLES / "models" / "tiny-mlp.onnx").resolve()
    assert resolve_source(path.as_uri(), tmp_path) == path


def test_wrong_sha256_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = _variant(tmp_path, {"spec.model.source.sha256": "0" * 64})
    code, out = _run(path, tmp_path / "store")
    assert code == EXIT_BAD_INPUT
    assert "spec.model.source.sha256" in out
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"spec.build.maxBatchSize": 0}, "spec.build.maxBatchSize"),
        ({"spec.build.precison": "fp16"}, "spec.build.precison"),
        ({"spec.build.optBatchSize": 64}, "spec.build.optBatchSize"),
        ({"spec.model.source.uri": "file://models/missing.onnx"}, "spec.model.source.uri"),
        ({"spec.model.source.uri": "https://example.com/m.onnx"}, "spec.model.source.uri"),
    ],
)
def test_invalid_spec_exits_2_naming_the_field(
    tmp_path: Path, edit: dict[str, object], field: str
) -> None:
    code, out = _run(_variant(tmp_path, edit), tmp_path / "store")
    assert code == EXIT_BAD_INPUT, out
    assert field in out, out


def test_not_a_model_deployment_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    code, out = _run(path, tmp_path / "store")
    assert code == EXIT_BAD_INPUT
    assert "ModelDeployment" in out


def test_tensorrt_falls_back_to_onnxruntime_and_says_so(tmp_path: Path) -> None:
    path = _variant(
        tmp_path,
        {"spec.build.engine": "tensorrt", "spec.build.gpu": {"product": "NVIDIA-H100-80GB-HBM3"}},
    )
    deployment = load_deployment(path)
    source = resolve_source(deployment.spec.model.source.uri, deployment.base_dir)
    request, note = to_build_request(deployment, source, tmp_path / "store")
    assert request.engine == "onnxruntime"
    assert request.serving_backend == "python"
    assert "tensorrt" in note
    assert "onnxruntime" in note
