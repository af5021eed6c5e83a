"""Torch archives made to run code when loaded: the builder never runs it and publishes nothing.

Each malicious archive starts as a real ExportedProgram of a tiny model. A subprocess first
shows that torch's own loader runs the payload (so the test could fail); then the build Job
refuses the archive, or builds it without ever touching the poisoned member, and the marker
file the payload would write never appears.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from modelops_builder.cli import EXIT_INPUT
from tests.support.builder_cases import (
    assert_nothing_published,
    make_request,
    run_job,
    save_model,
    sha_of,
)
from tests.support.torch_models import tiny_models

MODEL = tiny_models()["mlp"]
INPUTS = [{"name": "x", "dataType": "FP32", "dims": [16]}]


class _WriteMarker:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _rewrite(source: Path, dest: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy a zip, replacing members for which `change` returns new bytes."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(dest, "w") as new:
        for info in old.infolist():
            data = old.read(info.filename)
            replaced = change(info.filename, data)
            new.writestr(info, data if replaced is None else replaced)
    return dest


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ExportedProgram of the tiny MLP."""
    path, _ = save_model(MODEL, "exported-program", tmp_path_factory.mktemp("ep"))
    return path


def _torch_runs_it(archive: Path, marker: Path, call: str) -> None:
    """torch's own loader (in a child process) does run the payload: the threat is real."""
    code = f"import torch; ep = torch.export.load({str(archive)!r}); {call}"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, check=False)
    assert marker.exists(), "the poisoned archive should run code in torch.export.load"
    marker.unlink()


def _pickled_first_weight(program: Path, tmp_path: Path, marker: Path) -> Path:
    payload = pickle.dumps(_WriteMarker(marker))

    def change(name: str, data: bytes) -> bytes | None:
        if name.endswith("data/weights/model_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("data/weights/weight_0"):
            return payload
        return None

    return _rewrite(program, tmp_path / "evil.pt2", change)


def _formula(program: Path, tmp_path: Path, marker: Path) -> Path:
    def change(name: str, data: bytes) -> bytes | None:
        if not name.endswith("models/model.json"):
            return None
        text = data.decode()
        start = text.index('"expr_str": "') + len('"expr_str": "')
        evil = f"__import__('os').system('touch {marker}') or "
        return (text[:start] + evil + text[start:]).encode()

    return _rewrite(program, tmp_path / "evil.pt2", change)


def _job(archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    store = tmp_path / "store"
    request = make_request(archive, sha_of(archive), store, format="exported-program")
    code, summary = run_job(request, capsys)
    if code != 0:
        assert_nothing_published(store)
    return code, f"{summary.reason}: {summary.message}"


def test_a_pickled_weight_never_runs_and_nothing_is_published(
    program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    evil = _pickled_first_weight(program, tmp_path, marker)
    _torch_runs_it(evil, marker, "")
    code, message = _job(evil, tmp_path, capsys)
    assert code == EXIT_INPUT
    assert message.startswith("InvalidModel:")
    assert "stored as a pickle" in message
    assert "pickles are never loaded" in message
    assert not marker.exists()


def test_a_shape_formula_that_is_python_never_runs(
    program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "pwned"
    evil = _formula(program, tmp_path, marker)
    _torch_runs_it(evil, marker, "")
    code, message = _job(evil, tmp_path, capsys)
    assert code == EXIT_INPUT
    assert "is not plain shape arithmetic" in message
    assert not marker.exists()


def test_poisoned_sample_inputs_and_guards_are_never_read(
    program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The sample inputs are always a pickle (torch falls back to a full unpickle when the safe
    # one refuses), and the guards are Python that ExportedProgram.module() compiles: the
    # builder reads neither, so this archive builds, and nothing runs.
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_WriteMarker(marker))
    guard = f"__import__('os').system('touch {marker}') or True"

    def change(name: str, data: bytes) -> bytes | None:
        if name.endswith("data/sample_inputs/model.pt"):
            return payload
        if name.endswith("models/model.json"):
            program_json = json.loads(data)
            program_json["guards_code"] = [guard]
            return json.dumps(program_json).encode()
        return None

    evil = _rewrite(program, tmp_path / "evil.pt2", change)
    _torch_runs_it(evil, marker, "")
    code, message = _job(evil, tmp_path, capsys)
    assert code == 0, message
    assert not marker.exists()


@pytest.mark.parametrize(
    "target",
    [
        "torch.hub.load",
        # finding 9 of issue 23: file writers passed the old deny-list
        "torch.ops.aten.save.default",
        "torch.ops.aten.from_file.out",
    ],
)
def test_a_node_that_calls_python_is_refused(
    program: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    def change(name: str, data: bytes) -> bytes | None:
        if not name.endswith("models/model.json"):
            return None
        return data.replace(b'"torch.ops.aten.linear.default"', f'"{target}"'.encode(), 1)

    evil = _rewrite(program, tmp_path / "evil.pt2", change)
    code, message = _job(evil, tmp_path, capsys)
    assert code == EXIT_INPUT
    assert f"graph node calls '{target}', which is not among the operators" in message


def test_a_torchscript_pickle_with_a_python_global_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = save_model(MODEL, "torchscript", tmp_path / "src")
    marker = tmp_path / "pwned"

    def change(name: str, data: bytes) -> bytes | None:
        return pickle.dumps(_WriteMarker(marker), protocol=2) if name.endswith("data.pkl") else None

    evil = _rewrite(path, tmp_path / "evil.pt", change)
    store = tmp_path / "store"
    request = make_request(evil, sha_of(evil), store, format="torchscript", inputs=INPUTS)
    code, summary = run_job(request, capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "InvalidModel")
    assert "references the Python global" in (summary.message or "")
    assert not marker.exists()
    assert_nothing_published(store)
