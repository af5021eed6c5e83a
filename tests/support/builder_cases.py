"""Helpers of the builder tests: the tiny models saved in each format, requests, CLI runs.

The models come from `models.tiny_models()`; the token model is saved with a dynamic sequence
axis too (a text-like model whose non-batch dim is -1).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch

from modelops_builder import cli
from modelops_builder.fetch import PVC_ROOT_ENV
from modelops_contract.request import BuildRequest, BuildSummary
from tests.support.torch_models import OPSET, TinyModel

FORMATS = ("onnx", "torchscript", "exported-program")
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts", "exported-program": ".pt2"}
# Per-batch profiling bound in tests: three windows of 10 ms still prove the profiler runs.
PROFILE_S = 0.05


def dynamic_dims(model: TinyModel) -> dict[str, list[int]]:
    """Input dims as the builder sees them: the token model's sequence axis is dynamic."""
    return {
        name: [-1] if model.name == "tokens" else list(dims)
        for name, (dims, _) in model.inputs.items()
    }


def signature(model: TinyModel) -> list[dict[str, Any]]:
    """The model's inputs as request tensors (camelCase), with the dynamic dims."""
    dims = dynamic_dims(model)
    types = {np.float32: "FP32", np.int64: "INT64"}
    return [
        {"name": n, "dataType": types[dtype], "dims": dims[n]}
        for n, (_, dtype) in model.inputs.items()
    ]


def output_signature(model: TinyModel) -> list[dict[str, Any]]:
    """The model's outputs as request tensors, dims from a torch run."""
    outs = model.reference(model.sample(1))
    return [{"name": n, "dataType": "FP32", "dims": list(v.shape[1:])} for n, v in outs.items()]


def _example(model: TinyModel) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a) for a in model.sample(2).values())


def save_model(model: TinyModel, fmt: str, folder: Path) -> tuple[Path, str]:
    """Write the model in `fmt` under `folder`; the file and its sha256."""
    path = folder / f"{model.name}{SUFFIX[fmt]}"
    folder.mkdir(parents=True, exist_ok=True)
    example = _example(model)
    dims = dynamic_dims(model)
    if fmt == "onnx":
        axes: dict[str, dict[int, str]] = {
            n: {0: "batch"} | ({1: "seq"} if dims[n] == [-1] else {}) for n in model.inputs
        }
        axes |= {n: {0: "batch"} for n in model.outputs}
        with quiet_legacy_torch():
            torch.onnx.export(
                model.module,
                example,
                str(path),
                dynamo=False,
                input_names=list(model.inputs),
                output_names=model.outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
            )
    elif fmt == "torchscript":
        save_torchscript(model.module, example, path)
    else:
        batch = torch.export.Dim("batch", min=1, max=64)
        seq = torch.export.Dim("seq", min=2, max=64)
        shapes = tuple({0: batch} | ({1: seq} if dims[n] == [-1] else {}) for n in model.inputs)
        torch.export.save(torch.export.export(model.module, example, dynamic_shapes=shapes), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def quiet_legacy_torch() -> Iterator[None]:
    """The tests make TorchScript files and legacy ONNX exports on purpose (both stay supported
    sources): torch 2.13's deprecation warnings about them would only repeat that."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def save_torchscript(module: torch.nn.Module, example: tuple[Any, ...], path: Path) -> None:
    """torch.jit.trace + torch.jit.save, without the deprecation noise (nor the tracer's notes
    about data-dependent branches: a traced transformer is what some tests want to fail)."""
    with quiet_legacy_torch(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, example, check_trace=False)  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(path))  # type: ignore[no-untyped-call]


def make_request(path: Path | str, sha: str, store: Path | str, **fields: Any) -> BuildRequest:
    """A BuildRequest with test defaults (small batches, short profile)."""
    data: dict[str, Any] = {
        "sourceUri": str(path),
        "sha256": sha,
        "store": str(store),
        "maxBatchSize": 4,
        "optBatchSize": 2,
        "profileSeconds": PROFILE_S,
    }
    data.update(fields)
    return BuildRequest.model_validate(data)


def sha_of(path: Path) -> str:
    """sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def store_contents(store: Path) -> list[str]:
    """Everything at the top of a store (entries, staging dirs), sorted."""
    return sorted(p.name for p in store.iterdir()) if store.exists() else []


def assert_nothing_published(store: Path) -> None:
    """No entry and no staging directory left behind."""
    assert store_contents(store) == []


def run_job(
    request: BuildRequest | dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    *,
    local_as_pvc: bool = True,
) -> tuple[int, BuildSummary]:
    """`modelops-build --request JSON`: exit code and the summary parsed from stdout's last line.

    A Job never reads local files, so a test's local model reaches it as a Job would see it: as
    `pvc://FOLDER/FILE` under a MODELOPS_PVC_ROOT set for this call (`local_as_pvc=False` keeps
    the local URI, to test that the Job refuses it).
    """
    body = dict(request.to_wire() if isinstance(request, BuildRequest) else request)
    previous = os.environ.get(PVC_ROOT_ENV)
    uri = str(body.get("sourceUri", ""))
    parts = urlsplit(uri)
    if local_as_pvc and uri and parts.scheme in ("", "file"):
        path = Path(unquote(parts.path)).absolute()
        body["sourceUri"] = f"pvc://{path.parent.name}/{path.name}"
        os.environ[PVC_ROOT_ENV] = str(path.parent.parent)
    try:
        code = cli.main(["--request", json.dumps(body)])
    finally:
        if previous is None:
            os.environ.pop(PVC_ROOT_ENV, None)
        else:
            os.environ[PVC_ROOT_ENV] = previous
    out = capsys.readouterr().out.strip().splitlines()
    assert out, "the Job mode must print the summary line"
    return code, BuildSummary.model_validate_json(out[-1])
