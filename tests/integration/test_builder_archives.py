"""Multi-file ONNX models: a .tar/.tar.gz of one graph and its external-data files builds, keeps
its external data through fp16, publishes graph + data under the builder's names, pulls, and
hits the key cache; malicious archives and data references fail clearly, publishing nothing."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modelops_builder.cli import EXIT_INPUT
from modelops_builder.engines import ORT_DISABLED_OPTIMIZERS
from modelops_builder.pipeline import build
from modelops_builder.pull import open_source, pull
from tests.support.archives import external_model, tar_folder
from tests.support.builder_cases import (
    assert_nothing_published,
    make_request,
    run_job,
    sha_of,
)
from tests.support.torch_models import tiny_models

MODEL = tiny_models()["cnn"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """A .tar.gz of the CNN graph and its data files: (path, sha256, number of data files)."""
    root = tmp_path_factory.mktemp("archive")
    folder = external_model(root)
    files = len(list(folder.iterdir())) - 1
    path = root / "cnn.tar.gz"
    return path, tar_folder(folder, path), files


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_multi_file_model_builds_publishes_pulls_and_hits_the_cache(
    precision: str, archive: tuple[Path, str, int], tmp_path: Path
) -> None:
    path, sha, data_files = archive
    assert data_files > 4  # the weights really are spread over several files
    store = tmp_path / "store"
    request = make_request(path, sha, store, precision=precision)
    result = build(request, local_source=True)
    manifest = result.manifest
    assert manifest.model_files == ["model.onnx", "model.onnx.data"]
    version = manifest.version_dir(result.entry)
    assert sorted(p.name for p in version.iterdir()) == [
        "model.onnx",
        "model.onnx.data",
        "model.py",
    ]
    graph = onnx.load(str(version / "model.onnx"), load_external_data=False)
    external = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external  # conversions keep external data
    assert {t.data_type for t in external if t.data_type in (1, 10)} == {
        10 if precision == "fp16" else 1
    }
    # The published engine against torch.
    session = ort.InferenceSession(
        str(version / "model.onnx"), disabled_optimizers=ORT_DISABLED_OPTIMIZERS
    )
    feeds = MODEL.sample(3, seed=9)
    tolerance = 2e-2 if precision == "fp16" else 1e-4
    np.testing.assert_allclose(
        session.run(None, feeds)[0],
        MODEL.reference(feeds)["logits"],
        atol=tolerance,
        rtol=tolerance,
    )
    raw = (store / manifest.key.removeprefix("sha256:") / "engine.json").read_bytes()
    pulled = pull(
        open_source(manifest.key, store=str(store)),
        manifest.key,
        tmp_path / "pod" / "1",
        manifest_sha256=hashlib.sha256(raw).hexdigest(),
    )
    assert sorted(pulled.fetched) == ["model.onnx", "model.onnx.data", "model.py"]
    assert (tmp_path / "pod/1/model.onnx.data").read_bytes() == (
        version / "model.onnx.data"
    ).read_bytes()
    started = time.perf_counter()
    again = build(request, local_source=True)
    assert again.cached
    assert time.perf_counter() - started < 1.0  # a key hit reads engine.json, nothing else


def _tar(members: list[tuple[tarfile.TarInfo, bytes]], dest: Path, mode: str = "w") -> str:
    with tarfile.open(dest, mode) as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return sha_of(dest)


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _graph_with_location(location: str) -> bytes:
    """A valid graph whose one weight claims to live at `location`."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 4])
    weight = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[4, 4])
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    node = onnx.helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [x], [y], [weight])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


GRAPH = _graph_with_location("w.bin")
DATA = bytes(64)
# (name, members, maxDownloadBytes, reason, message fragment)
BAD: list[tuple[str, Callable[[], list[tuple[tarfile.TarInfo, bytes]]], str, str]] = [
    ("absolute", lambda: [(_file("/tmp/escaped.onnx"), GRAPH)], "InvalidSource", "absolute path"),
    ("dotdot", lambda: [(_file("m/../../escaped.bin"), DATA)], "InvalidSource", "'..'"),
    (
        "symlink",
        lambda: [(_link("w.bin", "/etc/hostname", tarfile.SYMTYPE), b""), (_file("m.onnx"), GRAPH)],
        "InvalidSource",
        "is a link",
    ),
    (
        "hardlink",
        lambda: [(_link("w.bin", "/etc/hostname", tarfile.LNKTYPE), b""), (_file("m.onnx"), GRAPH)],
        "InvalidSource",
        "is a link",
    ),
    (
        "second-onnx",
        lambda: [(_file("a.onnx"), GRAPH), (_file("b.onnx"), GRAPH), (_file("w.bin"), DATA)],
        "InvalidSource",
        "holds 2 .onnx files (a.onnx, b.onnx)",
    ),
    ("no-onnx", lambda: [(_file("w.bin"), DATA)], "InvalidSource", "holds 0 .onnx files"),
    (
        "data-outside",
        lambda: [(_file("m.onnx"), _graph_with_location("../source.onnx"))],
        "InvalidModel",
        "leaves the model's folder",
    ),
    (
        "data-absolute",
        lambda: [(_file("m.onnx"), _graph_with_location("/etc/hostname"))],
        "InvalidModel",
        "leaves the model's folder",
    ),
    (
        "data-short",
        lambda: [(_file("m.onnx"), GRAPH), (_file("w.bin"), DATA[:10])],
        "InvalidModel",
        "claims bytes 0..64 of a 10-byte file",
    ),
]


@pytest.mark.parametrize(
    ("members", "reason", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_a_malicious_archive_fails_clearly_and_publishes_nothing(
    members: Callable[[], list[tuple[tarfile.TarInfo, bytes]]],
    reason: str,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "src" / "model.tar"
    path.parent.mkdir()
    sha = _tar(members(), path)
    store = tmp_path / "store"
    code, summary = run_job(make_request(path, sha, store), capsys)
    assert (code, summary.reason) == (EXIT_INPUT, reason), summary.message
    assert fragment in (summary.message or "")
    assert_nothing_published(store)
    assert not list(tmp_path.rglob("escaped*"))


def test_an_archive_expanding_past_the_download_cap_is_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 4 MiB of zeros compress to a few KiB: the download is small, the extraction is not.
    path = tmp_path / "src" / "bomb.tar.gz"
    path.parent.mkdir()
    sha = _tar([(_file("m.onnx"), GRAPH), (_file("w.bin"), bytes(4 << 20))], path, mode="w:gz")
    assert path.stat().st_size < 100_000
    store = tmp_path / "store"
    request = make_request(path, sha, store, maxDownloadBytes=1 << 20)
    code, summary = run_job(request, capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "SourceTooLarge")
    assert "expands past 1048576 bytes (maxDownloadBytes)" in (summary.message or "")
    assert_nothing_published(store)


def test_a_single_onnx_file_with_external_data_points_to_the_archive_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "src" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(GRAPH)
    store = tmp_path / "store"
    code, summary = run_job(make_request(path, sha_of(path), store), capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "InvalidModel")
    assert "comes as a .tar or .tar.gz" in (summary.message or "")
    assert_nothing_published(store)
