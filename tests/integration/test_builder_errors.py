"""Bad inputs and broken infrastructure: each fails with its reason and exit code, and the store
is left exactly as it was (no entry, no staging directory)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from modelops_builder import engines
from modelops_builder.cli import EXIT_INFRA, EXIT_INPUT
from modelops_builder.pipeline import build
from tests.support.builder_cases import (
    assert_nothing_published,
    closed_port,
    make_request,
    quiet_legacy_torch,
    run_job,
    save_model,
    sha_of,
)
from tests.support.torch_models import OPSET, tiny_models

MODELS = tiny_models()


@pytest.fixture
def mlp(tmp_path: Path) -> tuple[Path, str]:
    """The tiny MLP as ONNX."""
    return save_model(MODELS["mlp"], "onnx", tmp_path / "src")


def _fails(
    capsys: pytest.CaptureFixture[str], store: Path, body: object, code: int, reason: str
) -> str:
    got_code, summary = run_job(body, capsys)  # type: ignore[arg-type]
    assert (got_code, summary.ok, summary.reason) == (code, False, reason), summary.message
    assert_nothing_published(store)
    assert summary.message
    return summary.message


def test_wrong_sha256_names_the_expected_digest_and_a_prefix_of_the_real_one(
    mlp: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = mlp
    wrong = "0" * 64
    store = tmp_path / "store"
    message = _fails(
        capsys, store, make_request(path, wrong, store), EXIT_INPUT, "ChecksumMismatch"
    )
    assert wrong in message
    assert sha[:8] in message
    assert sha not in message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_onnx_is_invalid(
    damage: str, mlp: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = mlp
    data = path.read_bytes()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x08\xff" * 300)
    sha = sha_of(broken)
    store = tmp_path / "store"
    message = _fails(capsys, store, make_request(broken, sha, store), EXIT_INPUT, "InvalidModel")
    assert "not a valid ONNX model" in message


class _Boom:
    """Unpickling this would run code: the builder must never get that far."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("unpickled!",))


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
@pytest.mark.parametrize("kind", ["torch.save", "raw pickle"])
def test_pickle_disguised_as_torch_format_is_refused(
    fmt: str, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.pt"
    if kind == "torch.save":
        torch.save(MODELS["mlp"].module, path)  # a zip holding a pickle of the module
    else:
        path.write_bytes(pickle.dumps(_Boom()))
    sha = sha_of(path)
    store = tmp_path / "store"
    inputs = [{"name": "x", "dataType": "FP32", "dims": [16]}]
    request = make_request(path, sha, store, format=fmt, inputs=inputs)
    message = _fails(capsys, store, request, EXIT_INPUT, "InvalidModel")
    assert "pickled modules (torch.save) are refused" in message
    assert "unpickled!" not in capsys.readouterr().out


def test_torch_format_without_inputs_needs_a_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = save_model(MODELS["mlp"], "torchscript", tmp_path / "src")
    store = tmp_path / "store"
    request = make_request(path, sha, store, format="torchscript")
    assert "needs spec inputs" in _fails(capsys, store, request, EXIT_INPUT, "SignatureRequired")


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (
            [{"name": "x", "dataType": "FP32", "dims": [3, 224, 224]}],
            "input 'x': spec says FP32 [3, 224, 224], graph has FP32 [16]",
        ),
        ([{"name": "x", "dataType": "INT64", "dims": [16]}], "graph has FP32 [16]"),
        ([{"name": "image", "dataType": "FP32", "dims": [16]}], "spec names ['image']"),
    ],
)
def test_spec_graph_mismatch_names_both(
    inputs: list[dict[str, object]],
    expected: str,
    mlp: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, sha = mlp
    store = tmp_path / "store"
    request = make_request(path, sha, store, inputs=inputs)
    assert expected in _fails(capsys, store, request, EXIT_INPUT, "SignatureMismatch")


class _HugeRange(nn.Module):
    """x * 1e5 overflows fp16 (max 65504): fine in fp32, Inf once converted."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1e5 - 3.0


def test_fp16_gate_catches_overflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "huge.onnx"
    with quiet_legacy_torch():
        torch.onnx.export(
            _HugeRange(),
            (torch.randn(2, 8),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
            opset_version=OPSET,
        )
    sha = sha_of(path)
    store = tmp_path / "store"
    fp32 = make_request(path, sha, tmp_path / "fp32-store")
    assert (
        build(fp32, local_source=True).manifest.accuracy is not None
    )  # the same graph passes in fp32
    request = make_request(path, sha, store, precision="fp16")
    message = _fails(capsys, store, request, EXIT_INPUT, "AccuracyGateFailed")
    assert "max abs error" in message
    assert "values outside atol 0.01 + rtol 0.01" in message


def test_unreachable_url_is_infrastructure(
    mlp: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELOPS_FETCH_RETRIES", "1")
    monkeypatch.setattr("modelops_builder.fetch_remote.BACKOFF_BASE_S", 0.01)
    _, sha = mlp
    store = tmp_path / "store"
    url = f"https://127.0.0.1:{closed_port()}/mlp.onnx"
    message = _fails(capsys, store, make_request(url, sha, store), EXIT_INFRA, "FetchFailed")
    assert "after 2 attempts" in message


def test_store_that_cannot_be_written(
    mlp: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A store under a regular file fails for root too (chmod would not stop root).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path, sha = mlp
    store = blocker / "store"
    message = _fails(capsys, store, make_request(path, sha, store), EXIT_INFRA, "StoreWriteFailed")
    assert str(blocker) in message
    assert blocker.read_text() == "x"


def test_tensorrt_without_gpu_fails_or_falls_back(
    mlp: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(engines.NO_GPU_ENV, "1")  # the same answer on a GPU machine
    path, sha = mlp
    store = tmp_path / "store"
    request = make_request(path, sha, store, engine="tensorrt", gpuProduct="NVIDIA-H100")
    message = _fails(capsys, store, request, EXIT_INFRA, "GpuUnavailable")
    assert "allowFallback" in message
    fallback = make_request(path, sha, store, engine="tensorrt", allowFallback=True)
    code, summary = run_job(fallback, capsys)
    assert code == 0
    assert summary.ok
    assert summary.engine == "onnxruntime"
    assert summary.fallback
    assert "GpuUnavailable" in summary.fallback
    entry = store / (summary.key or "").removeprefix("sha256:")
    assert (entry / "repository/model/1/model.onnx").is_file()
    assert '"fallback"' in (entry / "engine.json").read_text()


@pytest.mark.parametrize(
    "body",
    [{"sourceUri": "m.onnx"}, {"sourceUri": "m.onnx", "sha256": "0" * 64, "store": "s", "x": 1}],
)
def test_invalid_request(
    body: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, summary = run_job(body, capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "InvalidRequest")


def test_fixed_batch_graph_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fixed.onnx"
    with quiet_legacy_torch():
        torch.onnx.export(
            MODELS["mlp"].module,
            (torch.randn(1, 16),),
            str(path),
            dynamo=False,
            input_names=["x"],
            opset_version=OPSET,
        )
    sha = sha_of(path)
    store = tmp_path / "store"
    message = _fails(capsys, store, make_request(path, sha, store), EXIT_INPUT, "InvalidModel")
    assert "dynamic batch axis" in message
