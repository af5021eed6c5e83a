"""Helpers of the TensorRT tests: the fake module installed, a GPU node, requests, ONNX files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelops_builder import engines, tensorrt_runner
from modelops_builder.gpu import GpuInfo
from modelops_builder.tensorrt_runner import TorchBuffers
from modelops_builder.tensorrt_versions import EXPECTED_VERSION_ENV
from modelops_contract.request import BuildRequest
from tests.support import fake_tensorrt
from tests.support.builder_cases import PROFILE_S, save_model
from tests.support.torch_models import TinyModel, tiny_models

H100 = GpuInfo(True, "NVIDIA H100 80GB HBM3", "9.0", driver_version="580.95.05")


def install_gpu_node(monkeypatch: pytest.MonkeyPatch, **state: Any) -> Any:
    """The fake tensorrt as `tensorrt`, an H100 for detect_gpu, torch CPU tensors as memory."""
    fake = fake_tensorrt.install(monkeypatch, **state)
    monkeypatch.setattr(engines, "detect_gpu", lambda: H100)
    monkeypatch.setattr(tensorrt_runner, "default_buffers", lambda: TorchBuffers("cpu"))
    monkeypatch.delenv(EXPECTED_VERSION_ENV, raising=False)
    monkeypatch.setenv("CUDA_VERSION", "13.4.3.001")
    return fake


def model(name: str = "mlp") -> TinyModel:
    """One of the integration tests' tiny models (fixed weights)."""
    return tiny_models()[name]


def onnx_file(tiny: TinyModel, folder: Path) -> tuple[Path, str]:
    """The model as ONNX (dynamic batch; the token model's sequence too): path and sha256."""
    return save_model(tiny, "onnx", folder)


def trt_request(source: Path, sha: str, store: Path, **fields: Any) -> BuildRequest:
    """A TensorRT BuildRequest for a local ONNX file, small batches, a short profile."""
    wire = {
        "sourceUri": str(source),
        "sha256": sha,
        "engine": "tensorrt",
        "maxBatchSize": 8,
        "optBatchSize": 4,
        "store": str(store),
        "profileSeconds": PROFILE_S,
    }
    return BuildRequest.model_validate(wire | fields)
