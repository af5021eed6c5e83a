"""Sources and stores over the network, on loopback: https (a real TLS server with a self-signed
certificate), pvc:// paths, and s3:// through boto3 against a small S3-compatible stub."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from modelops_builder.cli import EXIT_INPUT
from modelops_builder.errors import BuildError
from modelops_builder.fetch import PVC_ROOT_ENV, fetch
from modelops_builder.pipeline import build
from tests.support.builder_cases import assert_nothing_published, make_request, run_job, save_model
from tests.support.torch_models import tiny_models

MODEL = tiny_models()["mlp"]


class _Files(BaseHTTPRequestHandler):
    """GET /name serves files[name]; a few special paths misbehave on purpose."""

    files: ClassVar[dict[str, bytes]] = {}
    failures: ClassVar[dict[str, int]] = {}
    seen_auth: ClassVar[list[str | None]] = []

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet: the server logs every request to stderr by default."""

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        self.seen_auth.append(self.headers.get("Authorization"))
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            self.send_error(503)
            return
        body = self.files.get(name.removeprefix("nolength/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if not name.startswith("nolength/"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if name.startswith("nolength/"):
            self.close_connection = True


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1 (openssl CLI); the folder holding it."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(folder / "key.pem"), "-out", str(folder / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return folder


@pytest.fixture
def https(tls: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An https server on loopback whose certificate this process trusts; its base URL."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SSL_CERT_FILE", str(tls / "cert.pem"))
    monkeypatch.setattr("modelops_builder.fetch.BACKOFF_BASE_S", 0.01)
    _Files.files.clear()
    _Files.failures.clear()
    _Files.seen_auth.clear()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_https_download_builds(https: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, sha = save_model(MODEL, "onnx", tmp_path / "src")
    _Files.files["mlp.onnx"] = path.read_bytes()
    _Files.failures["mlp.onnx"] = 2  # two 503s, then the file: retried with backoff
    monkeypatch.setenv("MODELOPS_HTTP_AUTHORIZATION", "Bearer t0ken")
    result = build(make_request(f"{https}/mlp.onnx", sha, tmp_path / "store"))
    assert result.manifest.source_sha256 == sha
    assert _Files.seen_auth == ["Bearer t0ken"] * 3


@pytest.mark.parametrize("prefix", ["", "nolength/"])
def test_https_size_limit(
    prefix: str, https: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = save_model(MODEL, "onnx", tmp_path / "src")
    _Files.files["mlp.onnx"] = path.read_bytes()
    store = tmp_path / "store"
    request = make_request(f"{https}/{prefix}mlp.onnx", sha, store, maxDownloadBytes=1000)
    code, summary = run_job(request, capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "SourceTooLarge")
    assert "maxDownloadBytes (1000" in (summary.message or "")
    assert_nothing_published(store)


def test_https_404_is_bad_input_without_retries(https: str, tmp_path: Path) -> None:
    with pytest.raises(BuildError) as caught:
        fetch(f"{https}/missing.onnx", "0" * 64, tmp_path / "f", max_bytes=1 << 20)
    assert (caught.value.reason, caught.value.kind) == ("FetchFailed", "input")
    assert "HTTP 404" in caught.value.message
    assert len(_Files.seen_auth) == 1


def test_pvc_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PVC_ROOT_ENV, str(tmp_path / "pvc"))
    path, sha = save_model(MODEL, "onnx", tmp_path / "pvc" / "models" / "v1")
    fetched = fetch("pvc://models/v1/mlp.onnx", sha, tmp_path / "copy", max_bytes=1 << 20)
    assert fetched.read_bytes() == path.read_bytes()
    (tmp_path / "secret").write_text("s")
    (tmp_path / "pvc" / "models" / "link").symlink_to(tmp_path / "secret")
    for uri in ["pvc://models/../secret", "pvc://models/link", "pvc://models"]:
        with pytest.raises(BuildError) as caught:
            fetch(uri, sha, tmp_path / "copy2", max_bytes=1 << 20)
        assert caught.value.reason == "InvalidSource", uri


class _S3(BaseHTTPRequestHandler):
    """Path-style S3: HEAD bucket, GET/PUT objects, NoSuchKey errors; records the PUT order."""

    # HTTP/1.1 so the handler answers botocore's "Expect: 100-continue" at once (1.0 makes
    # botocore wait a second per PUT before sending the body anyway).
    protocol_version = "HTTP/1.1"
    objects: ClassVar[dict[str, bytes]] = {}
    puts: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet: the server logs every request to stderr by default."""

    def _error(self, status: int, code: str) -> None:
        body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        key = self.path.split("?")[0].lstrip("/")
        if key not in self.objects:
            self._error(404, "NoSuchKey")
            return
        body = self.objects[key]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        key = self.path.split("?")[0].lstrip("/")
        self.objects[key] = self.rfile.read(int(self.headers["Content-Length"]))
        self.puts.append(key)
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_S3]]:
    """The stub on loopback, with boto3 pointed at it through the standard AWS_* variables."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _S3)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        # Plain Content-Length uploads (no aws-chunked trailers) keep the stub small.
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _S3.objects.clear()
    _S3.puts.clear()
    yield _S3
    server.shutdown()
    server.server_close()


def test_s3_source_and_store(s3: type[_S3], tmp_path: Path) -> None:
    path, sha = save_model(MODEL, "onnx", tmp_path / "src")
    s3.objects["models/team/mlp.onnx"] = path.read_bytes()
    request = make_request("s3://models/team/mlp.onnx", sha, "s3://engines/prod")
    result = build(request)
    digest = (result.summary.key or "").removeprefix("sha256:")
    assert result.summary.uri == f"s3://engines/prod/{digest}"
    assert s3.puts[-1] == f"engines/prod/{digest}/engine.json"  # the commit marker goes last
    assert f"engines/prod/{digest}/repository/model/1/model.onnx" in s3.puts
    again = build(request)
    assert again.cached
    assert again.manifest == result.manifest
    with pytest.raises(BuildError) as caught:
        fetch("s3://models/team/missing.onnx", sha, tmp_path / "x", max_bytes=1 << 20)
    assert (caught.value.reason, caught.value.kind) == ("FetchFailed", "input")
