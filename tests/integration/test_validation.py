"""The validation run against real Triton: the entry's own set, a user's set, a wrongly served
engine, and the Job's command line with its termination message."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops_builder.errors import BuildError
from modelops_builder.pipeline import BuildResult, build
from modelops_builder.triton_local import TritonProcess, start_triton
from modelops_builder.validate import validate
from modelops_cli.dev import assemble_repository
from modelops_contract.request import BuildRequest
from modelops_contract.tritonconfig import ServingOptions
from modelops_contract.validation import (
    VALIDATION_SET_NAME,
    UserValidationSet,
    ValidationRequest,
    parse_validation_summary,
)
from tests.support.torch_models import export_onnx, tiny_models

pytestmark = pytest.mark.triton

NAME = "mlp"


def _build(root: Path, seed: int) -> BuildResult:
    model = tiny_models(seed)["mlp"]
    source = root / f"mlp-{seed}.onnx"
    sha = export_onnx(model, source)
    return build(
        BuildRequest(
            source_uri=source.as_uri(),
            sha256=sha,
            max_batch_size=8,
            store=str(root / "store"),
            model_name=NAME,
            serving_backend="python",
            profile_seconds=0.1,
        ),
        local_source=True,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`right` serves its own engine; `wrong` serves other weights under the same manifest (a
    repository that does not match the engine it claims: the gate cannot see it)."""
    root = tmp_path_factory.mktemp("validation")
    right, other = _build(root, 0), _build(root, 1)
    options = ServingOptions(gpu=False, backend="python")
    repos = {}
    for label, entry in (("right", right.entry), ("wrong", other.entry)):
        repos[label] = assemble_repository(
            right.manifest, entry, NAME, options, root / f"repo-{label}"
        )
    servers = {label: start_triton(repo) for label, repo in repos.items()}
    try:
        yield {"build": right, **servers}
    finally:
        for server in servers.values():
            if isinstance(server, TritonProcess):
                server.stop(10.0)


def request_for(served: dict[str, Any], *targets: str, **extra: Any) -> ValidationRequest:
    built: BuildResult = served["build"]
    manifest = built.manifest
    return ValidationRequest(
        model_name=NAME,
        targets=[served[t].grpc_url for t in targets],
        reference_set=str(built.entry / VALIDATION_SET_NAME),
        inputs=[s.name for s in manifest.inputs],
        outputs=[s.name for s in manifest.outputs],
        atol=1e-5,
        rtol=1e-4,
        max_batch_size=manifest.max_batch_size,
        **extra,
    )


def test_the_entry_carries_a_validation_set(served: dict[str, Any]) -> None:
    with np.load(served["build"].entry / VALIDATION_SET_NAME, allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["input.x", "output.y"]
        assert arrays["input.x"].shape == (8, 16)


def test_a_rightly_served_engine_passes_on_every_pod(served: dict[str, Any]) -> None:
    summary = validate(request_for(served, "right", "right"))
    assert summary.ok
    assert (summary.samples, summary.pods) == (8, 2)
    assert summary.max_abs_error is not None
    assert summary.max_abs_error <= 1e-5


def test_a_wrongly_served_engine_fails_and_names_the_pod(served: dict[str, Any]) -> None:
    with pytest.raises(BuildError) as failure:
        validate(request_for(served, "right", "wrong"))
    assert failure.value.reason == "ValidationFailed"
    assert served["wrong"].grpc_url in failure.value.message
    assert "output 'y'" in failure.value.message


def _user_set(tmp_path: Path, served: dict[str, Any], labels: Any) -> UserValidationSet:
    x = np.random.default_rng(7).standard_normal((12, 16)).astype(np.float32)
    path = tmp_path / "labelled.npz"
    np.savez(path, x=x, labels=labels(x))
    import hashlib

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return UserValidationSet(source_uri=path.as_uri(), sha256=sha, min_accuracy=0.9)


def test_a_labelled_user_set_gates_on_accuracy(served: dict[str, Any], tmp_path: Path) -> None:
    model = tiny_models(0)["mlp"]
    truth = _user_set(tmp_path, served, lambda x: model.reference({"x": x})["y"].argmax(axis=1))
    summary = validate(request_for(served, "right", user_set=truth), local_source=True)
    assert summary.accuracy == 1.0
    wrong = _user_set(tmp_path, served, lambda x: np.full(len(x), 10**6, dtype=np.int64))
    with pytest.raises(BuildError, match=r"accuracy 0.0000 < minAccuracy 0.9"):
        validate(request_for(served, "right", user_set=wrong), local_source=True)


def test_the_job_command_leaves_a_summary(served: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    request = request_for(served, "wrong")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "modelops-build"),
            "validate",
            "--request",
            request.model_dump_json(by_alias=True),
        ],
        capture_output=True,
        text=True,
        env={"MODELOPS_TERMINATION_LOG": str(log), "PATH": "/usr/bin:/bin"},
        check=False,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    summary = parse_validation_summary(log.read_text())
    assert summary is not None
    assert summary.ok is False
    assert summary.reason == "ValidationFailed"
    assert json.loads(result.stdout.splitlines()[-1])["reason"] == "ValidationFailed"
