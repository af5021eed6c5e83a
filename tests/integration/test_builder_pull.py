"""`modelops-build pull` straight from a store (a person with the store's key): every byte
checked against engine.json, engine.json against its MAC or a pinned digest; a changed entry is
refused and never left in DEST. Real entries built by the pipeline from the tiny MLP; s3://
through boto3 against a loopback stub. The Triton pods' pull through the engine server:
test_store_server.py."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import pytest

from modelops_builder import cli
from modelops_builder.cli import EXIT_INFRA, EXIT_INPUT, EXIT_OK
from modelops_builder.job_output import TERMINATION_LOG_ENV
from modelops_builder.pipeline import build
from modelops_builder.pull import PARTIAL_PREFIX
from modelops_contract.integrity import MAC_KEY_ENV
from modelops_contract.manifest import EngineManifest
from tests.support.builder_cases import closed_port, make_request, save_model
from tests.support.engine_store import TEST_MAC_KEY, rewrite_manifest
from tests.support.torch_models import tiny_models


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EngineManifest]:
    """A directory store holding one real entry (tiny MLP, onnxruntime), sealed with the store's
    key as the publishing step seals it; (store, manifest)."""
    root = tmp_path_factory.mktemp("pull")
    path, sha = save_model(tiny_models()["mlp"], "onnx", root / "src")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(MAC_KEY_ENV, TEST_MAC_KEY)
        result = build(make_request(path, sha, root / "store"), local_source=True)
    assert result.manifest.mac is not None
    return root / "store", result.manifest


@pytest.fixture(autouse=True)
def store_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A person pulling from a store has its key (the Triton pods pin a digest instead)."""
    monkeypatch.setenv(MAC_KEY_ENV, TEST_MAC_KEY)


def version_dir(store: Path, manifest: EngineManifest) -> Path:
    return manifest.version_dir(store / manifest.key.removeprefix("sha256:"))


def pull(
    capsys: pytest.CaptureFixture[str],
    store: str,
    key: str,
    dest: Path,
    model: str = "model",
    *extra: str,
) -> tuple[int, str, str]:
    """`modelops-build pull ...`: exit code, stdout, stderr."""
    argv = ["pull", "--store", store, "--key", key, "--model", model, "--dest", str(dest), *extra]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under `folder`: (inode, mtime_ns, content), so a rewrite would show."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def assert_same_files(dest: Path, source: Path) -> None:
    got = {k: v[2] for k, v in snapshot(dest).items()}
    assert got == {k: v[2] for k, v in snapshot(source).items()}


def copy_store(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    return copy


# --- directory store ---------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["", "file://"])
def test_pull_from_a_directory_store_is_verified_and_idempotent(
    scheme: str,
    entry: tuple[Path, EngineManifest],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, manifest = entry
    source = version_dir(store, manifest)
    dest = tmp_path / "models" / "mlp" / "1"  # parents created
    code, out, err = pull(capsys, f"{scheme}{store}", manifest.key, dest)
    assert (code, err) == (EXIT_OK, "")
    assert_same_files(dest, source)
    assert (dest / manifest.model_file).is_file()
    files = len(snapshot(source))
    assert out.startswith(f"pulled {manifest.key} model 'model' ({manifest.model_file})")
    assert f"into {dest}: {files} fetched" in out
    assert out.endswith("every sha256 checked")
    assert len(out.splitlines()) == 1
    before = snapshot(dest)
    code, out, _ = pull(capsys, f"{scheme}{store}", manifest.key, dest)
    assert code == EXIT_OK
    assert out.startswith("already in place:")
    assert f"0 fetched (0 B), {files} kept" in out
    assert snapshot(dest) == before  # nothing rewritten


def test_every_file_of_the_version_dir_is_listed_with_its_digest(
    entry: tuple[Path, EngineManifest],
) -> None:
    store, manifest = entry
    entry_dir = store / manifest.key.removeprefix("sha256:")
    on_disk = {
        p.relative_to(entry_dir).as_posix()
        for p in entry_dir.rglob("*")
        if p.is_file() and p.name != "engine.json"
    }
    assert {f.path for f in manifest.files} == on_disk
    assert {"repository/model/1/model.py", "repository/model/config.pbtxt"} <= on_disk
    assert "build.json" not in on_disk


def test_pull_without_anything_to_verify_with_is_refused(
    entry: tuple[Path, EngineManifest],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MAC_KEY_ENV)
    store, manifest = entry
    code, _, err = pull(capsys, str(store), manifest.key, tmp_path / "d")
    assert code == EXIT_INPUT
    assert "UnverifiedEntry" in err
    assert "--manifest-sha256" in err
    assert not (tmp_path / "d").exists()


def test_a_manifest_changed_after_publishing_is_refused(
    entry: tuple[Path, EngineManifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, manifest = entry
    copy = copy_store(store, tmp_path)
    rewrite_manifest(copy, manifest.key, maxBatchSize=64)
    code, _, err = pull(capsys, str(copy), manifest.key, tmp_path / "d")
    assert code == EXIT_INFRA
    assert "EngineTampered" in err
    assert "changed after publishing" in err
    assert not (tmp_path / "d").exists()


def test_a_file_changed_after_publishing_is_refused_and_never_left_in_dest(
    entry: tuple[Path, EngineManifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, manifest = entry
    copy = copy_store(store, tmp_path)
    model = version_dir(copy, manifest) / manifest.model_file
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    dest = tmp_path / "d"
    code, _, err = pull(capsys, str(copy), manifest.key, dest)
    assert code == EXIT_INFRA
    assert f"EngineTampered: {copy}" in err
    assert manifest.model_file in err
    assert not (dest / manifest.model_file).exists()
    assert not list(dest.glob(f"{PARTIAL_PREFIX}*"))


def test_a_pinned_digest_vouches_for_the_manifest(
    entry: tuple[Path, EngineManifest],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MAC_KEY_ENV)
    store, manifest = entry
    raw = (store / manifest.key.removeprefix("sha256:") / "engine.json").read_bytes()
    good = hashlib.sha256(raw).hexdigest()
    code, _, _ = pull(
        capsys, str(store), manifest.key, tmp_path / "a", "m", "--manifest-sha256", good
    )
    assert code == EXIT_OK
    code, _, err = pull(
        capsys, str(store), manifest.key, tmp_path / "b", "m", "--manifest-sha256", "0" * 64
    )
    assert code == EXIT_INFRA
    assert "EngineTampered" in err
    assert "changed after it was checked" in err


def test_pull_replaces_partial_and_wrong_files_of_a_killed_run(
    entry: tuple[Path, EngineManifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, manifest = entry
    dest = tmp_path / "dest"
    dest.mkdir()
    size = (version_dir(store, manifest) / manifest.model_file).stat().st_size
    (dest / manifest.model_file).write_bytes(b"x" * size)  # the right size, the wrong bytes
    (dest / f"{PARTIAL_PREFIX}{manifest.model_file}-0badcafe").write_bytes(b"half")
    code, out, _ = pull(capsys, str(store), manifest.key, dest)
    assert code == EXIT_OK
    assert f"into {dest}: {len(snapshot(version_dir(store, manifest)))} fetched" in out
    assert_same_files(dest, version_dir(store, manifest))
    assert not list(dest.glob(f"{PARTIAL_PREFIX}*"))


def test_pull_uses_the_entrys_model_name(
    entry: tuple[Path, EngineManifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, manifest = entry
    code, out, _ = pull(capsys, str(store), manifest.key, tmp_path / "d", model="bert")
    assert code == EXIT_OK
    assert "the entry holds model 'model', not 'bert': pulled 'model'" in out
    assert_same_files(tmp_path / "d", version_dir(store, manifest))


def test_pull_missing_or_incomplete_entry_is_engine_not_found(
    entry: tuple[Path, EngineManifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, manifest = entry
    missing = "sha256:" + "0" * 64
    code, out, err = pull(capsys, str(store), missing, tmp_path / "d")
    assert (code, out) == (EXIT_INPUT, "")
    assert err.startswith(f"modelops-build pull: EngineNotFound: no complete engine for {missing}")
    assert f"at {store}" in err
    assert not (tmp_path / "d").exists()
    # An entry without engine.json (an upload cut short) is no entry.
    partial = copy_store(store, tmp_path)
    (partial / manifest.key.removeprefix("sha256:") / "engine.json").unlink()
    code, _, err = pull(capsys, str(partial), manifest.key, tmp_path / "d")
    assert code == EXIT_INPUT
    assert "EngineNotFound" in err


def test_pull_entry_without_its_engine_file_is_infrastructure(
    entry: tuple[Path, EngineManifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, manifest = entry
    broken = copy_store(store, tmp_path)
    (version_dir(broken, manifest) / manifest.model_file).unlink()
    code, _, err = pull(capsys, str(broken), manifest.key, tmp_path / "d")
    assert code == EXIT_INFRA
    assert "StoreUnavailable: cannot read" in err
    assert manifest.model_file in err


@pytest.mark.parametrize("key", ["sha256:../../etc", "sha256:ABC", ""])
def test_pull_rejects_a_malformed_key(
    key: str, entry: tuple[Path, EngineManifest], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = pull(capsys, str(entry[0]), key, tmp_path / "d")
    assert code == EXIT_INPUT
    assert "InvalidRequest" in err


def test_pull_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["pull", "--store", "s3://b/p"])
    assert caught.value.code == EXIT_INPUT
    assert "--key" in capsys.readouterr().err


# --- s3 store ------------------------------------------------------------------------------------
class _S3(BaseHTTPRequestHandler):
    """Path-style S3 for reads: GetObject, ListObjectsV2 (one page), NoSuchKey; counts GETs."""

    protocol_version = "HTTP/1.1"
    objects: ClassVar[dict[str, bytes]] = {}
    gets: ClassVar[list[str]] = []
    lists: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet: the server logs every request to stderr by default."""

    def _send(self, status: int, body: bytes, content_type: str = "application/xml") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path.lstrip("/")
        query = parse_qs(parts.query)
        if "list-type" in query:  # GET /bucket?list-type=2&prefix=...
            self._list(path.rstrip("/"), query.get("prefix", [""])[0])
            return
        if path not in self.objects:
            code = "NoSuchKey"
            body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
            self._send(404, body)
            return
        self.gets.append(path)
        self._send(200, self.objects[path], "application/octet-stream")

    def _list(self, bucket: str, prefix: str) -> None:
        self.lists.append(prefix)
        full = f"{bucket}/{prefix}"
        items = "".join(
            f"<Contents><Key>{escape(k.removeprefix(bucket + '/'))}</Key>"
            f"<LastModified>2025-01-01T00:00:00.000Z</LastModified><ETag>&quot;0&quot;</ETag>"
            f"<Size>{len(v)}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            for k, v in sorted(self.objects.items())
            if k.startswith(full)
        )
        count = items.count("<Contents>")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{count}</KeyCount><MaxKeys>1000</MaxKeys>"
            f"<IsTruncated>false</IsTruncated>{items}</ListBucketResult>"
        ).encode()
        self._send(200, body)


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_S3]]:
    """The stub on loopback, boto3 pointed at it through the standard AWS_* variables."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _S3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    _S3.objects.clear()
    _S3.gets.clear()
    _S3.lists.clear()
    yield _S3
    server.shutdown()
    server.server_close()


def upload(s3: type[_S3], store: Path, bucket_prefix: str) -> None:
    """Every file of a directory store as objects under `bucket/prefix/`."""
    for path in store.rglob("*"):
        if path.is_file():
            s3.objects[f"{bucket_prefix}/{path.relative_to(store).as_posix()}"] = path.read_bytes()


def test_pull_from_s3_is_idempotent(
    s3: type[_S3],
    entry: tuple[Path, EngineManifest],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, manifest = entry
    upload(s3, store, "engines/prod")
    digest = manifest.key.removeprefix("sha256:")
    source = version_dir(store, manifest)
    files = sorted(snapshot(source))
    dest = tmp_path / "models" / "mlp" / "1"
    code, out, err = pull(capsys, "s3://engines/prod", manifest.key, dest)
    assert (code, err) == (EXIT_OK, "")
    assert f"from s3://engines/prod/{digest} into {dest}: {len(files)} fetched" in out
    assert_same_files(dest, source)
    folder = f"engines/prod/{digest}/repository/model/1"
    assert s3.gets == [f"engines/prod/{digest}/engine.json"] + [f"{folder}/{f}" for f in files]
    assert s3.lists == []  # engine.json lists the files: no listing needed
    before = snapshot(dest)
    s3.gets.clear()
    code, out, _ = pull(capsys, "s3://engines/prod", manifest.key, dest)
    assert code == EXIT_OK
    assert f"0 fetched (0 B), {len(files)} kept" in out
    assert s3.gets == [f"engines/prod/{digest}/engine.json"]  # the files are not downloaded again
    assert snapshot(dest) == before


def test_pull_from_s3_without_a_complete_entry(
    s3: type[_S3],
    entry: tuple[Path, EngineManifest],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store, manifest = entry
    upload(s3, store, "engines/prod")
    digest = manifest.key.removeprefix("sha256:")
    del s3.objects[f"engines/prod/{digest}/engine.json"]  # the commit marker never arrived
    code, out, err = pull(capsys, "s3://engines/prod", manifest.key, tmp_path / "d")
    assert (code, out) == (EXIT_INPUT, "")
    assert (
        f"EngineNotFound: no complete engine for {manifest.key} at s3://engines/prod/{digest}"
        in err
    )
    assert "engine.json is missing" in err
    assert s3.lists == []  # nothing looked at beyond the marker
    assert not (tmp_path / "d").exists()


def test_pull_from_an_unreachable_s3_store_is_infrastructure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    log = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_LOG_ENV, str(log))
    started = time.monotonic()
    code, out, err = pull(capsys, "s3://engines/prod", "sha256:" + "1" * 64, tmp_path / "d")
    assert (code, out) == (EXIT_INFRA, "")
    assert err.startswith("modelops-build pull: StoreUnavailable: cannot read s3://engines/prod/")
    assert log.read_text().strip() == err.splitlines()[-1]
    assert not (tmp_path / "d").exists()
    assert time.monotonic() - started < 60


def test_build_modes_still_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pull` is a word before the flags; MODEL and --request keep their meaning."""
    assert cli.main([]) == EXIT_INPUT
    assert "give either MODEL or --request" in capsys.readouterr().err
    assert cli.main(["--request", "{}"]) == EXIT_INPUT
    assert '"reason":"InvalidRequest"' in capsys.readouterr().out
    assert cli.main([str(tmp_path / "missing.onnx")]) == EXIT_INPUT
