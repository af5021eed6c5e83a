"""Multi-file ONNX sources for the tests: the tiny CNN with its weights in external-data files
(names chosen by onnx from the model), and a .tar/.tar.gz of a folder."""

from __future__ import annotations

import tarfile
from pathlib import Path

import onnx

from tests.support.builder_cases import save_model, sha_of
from tests.support.torch_models import tiny_models

MODEL = tiny_models()["cnn"]


def external_model(folder: Path) -> Path:
    """The tiny CNN as ONNX with every weight in its own external file (names from the model)."""
    path, _ = save_model(MODEL, "onnx", folder / "export")
    model = onnx.load(str(path))
    target = folder / "model"
    target.mkdir(parents=True)
    onnx.save_model(
        model,
        str(target / "cnn.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=0,
    )
    return target


def tar_folder(folder: Path, dest: Path, mode: str = "w:gz") -> str:
    """Archive every file of `folder` at the archive's root; the archive's sha256."""
    with tarfile.open(dest, mode) as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return sha_of(dest)
