"""Sources and stores over the network, on loopback: https (real TLS servers with a self-signed
certificate), pvc:// paths, and s3:// through boto3 against a small S3-compatible stub. The
source's credentials are the allow-listed MODELOPS_SOURCE_* variables only: redirects never
carry them to another origin, and the store's AWS_* identity never signs a source request."""

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
from modelops_contract.credentials import SOURCE_CREDENTIAL_ENV
from tests.support.builder_cases import (
    assert_nothing_published,
    closed_port,
    make_request,
    run_job,
    save_model,
)
from tests.support.torch_models import tiny_models

MODEL = tiny_models()["mlp"]
SOURCE_AUTH_ENV = SOURCE_CREDENTIAL_ENV["HTTP_AUTHORIZATION"]


class _Files(BaseHTTPRequestHandler):
    """GET /name serves files[name]; a few special paths misbehave on purpose."""

    files: ClassVar[dict[str, bytes]] = {}
    failures: ClassVar[dict[str, int]] = {}
    redirects: ClassVar[dict[str, str]] = {}
    seen_auth: ClassVar[list[str | None]] = []

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet: the server logs every request to stderr by default."""

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        self.seen_auth.append(self.headers.get("Authorization"))
        if name in self.redirects:
            self.send_response(302)
            self.send_header("Location", self.redirects[name])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
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


def _start_https(tls: Path) -> tuple[ThreadingHTTPServer, str]:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"https://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def https(tls: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An https server on loopback whose certificate this process trusts; its base URL."""
    server, url = _start_https(tls)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls / "cert.pem"))
    monkeypatch.setattr("modelops_builder.fetch_remote.BACKOFF_BASE_S", 0.01)
    _Files.files.clear()
    _Files.failures.clear()
    _Files.redirects.clear()
    _Files.seen_auth.clear()
    yield url
    server.shutdown()
    server.server_close()


def test_https_download_builds(https: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, sha = save_model(MODEL, "onnx", tmp_path / "src")
    _Files.files["mlp.onnx"] = path.read_bytes()
    _Files.failures["mlp.onnx"] = 2  # two 503s, then the file: retried with backoff
    monkeypatch.setenv(SOURCE_AUTH_ENV, "Bearer t0ken")
    result = build(make_request(f"{https}/mlp.onnx", sha, tmp_path / "store"))
    assert result.manifest.source_sha256 == sha
    assert _Files.seen_auth == ["Bearer t0ken"] * 3


def test_redirect_keeps_authorization_on_the_same_origin_only(
    https: str, tls: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other, other_url = _start_https(tls)  # another port: another origin
    try:
        path, sha = save_model(MODEL, "onnx", tmp_path / "src")
        _Files.files["mlp.onnx"] = path.read_bytes()
        _Files.redirects["same"] = f"{https}/mlp.onnx"
        _Files.redirects["elsewhere"] = f"{other_url}/mlp.onnx"
        monkeypatch.setenv(SOURCE_AUTH_ENV, "Bearer t0ken")
        fetch(f"{https}/same", sha, tmp_path / "a", max_bytes=1 << 20)
        assert _Files.seen_auth == ["Bearer t0ken", "Bearer t0ken"]
        _Files.seen_auth.clear()
        fetch(f"{https}/elsewhere", sha, tmp_path / "b", max_bytes=1 << 20)
        assert _Files.seen_auth == ["Bearer t0ken", None]  # the other origin got no token
    finally:
        other.shutdown()
        other.server_close()


def test_redirect_to_plain_http_is_refused(
    https: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SOURCE_AUTH_ENV, "Bearer t0ken")
    _Files.redirects["down"] = f"http://127.0.0.1:{closed_port()}/mlp.onnx"
    store = tmp_path / "store"
    code, summary = run_job(make_request(f"{https}/down", "0" * 64, store), capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "FetchFailed")
    assert "only https:// redirects are followed" in (summary.message or "")
    assert "t0ken" not in (summary.message or "")
    assert _Files.seen_auth == ["Bearer t0ken"]
    assert_nothing_published(store)


@pytest.mark.parametrize(
    "uri", ["file:///etc/hostname", "/etc/hostname", "file:///proc/self/environ"]
)
def test_job_mode_refuses_local_files(
    uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    code, summary = run_job(make_request(uri, "0" * 64, store), capsys, local_as_pvc=False)
    assert (code, summary.reason) == (EXIT_INPUT, "InvalidSource")
    assert "`modelops dev`" in (summary.message or "")
    assert "sha256" not in (summary.message or "")  # nothing was read, nothing to report
    assert_nothing_published(store)


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


STORE_KEY_ID = "STOREKEY"
SOURCE_KEY_ID = "SOURCEKEY"


class _S3(BaseHTTPRequestHandler):
    """Path-style S3: HEAD bucket, GET/PUT objects, NoSuchKey errors; records the PUT order."""

    # HTTP/1.1 so the handler answers botocore's "Expect: 100-continue" at once (1.0 makes
    # botocore wait a second per PUT before sending the body anyway).
    protocol_version = "HTTP/1.1"
    objects: ClassVar[dict[str, bytes]] = {}
    puts: ClassVar[list[str]] = []
    gets: ClassVar[list[tuple[str, str | None]]] = []  # (key, Authorization) of every GET

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
        self.gets.append((key, self.headers.get("Authorization")))
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
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {
        # The store's identity (the operator's store Secret)...
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": STORE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": "store-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        # Plain Content-Length uploads (no aws-chunked trailers) keep the stub small.
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # ...and the source's endpoint: the source client ignores AWS_ENDPOINT_URL.
    monkeypatch.setenv(SOURCE_CREDENTIAL_ENV["AWS_ENDPOINT_URL"], url)
    _S3.objects.clear()
    _S3.puts.clear()
    _S3.gets.clear()
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


def _source_gets(s3: type[_S3], prefix: str) -> list[str | None]:
    return [auth for key, auth in s3.gets if key.startswith(prefix)]


def test_s3_source_without_credentials_is_fetched_anonymously(
    s3: type[_S3], tmp_path: Path
) -> None:
    path, sha = save_model(MODEL, "onnx", tmp_path / "src")
    s3.objects["public/mlp.onnx"] = path.read_bytes()
    build(make_request("s3://public/mlp.onnx", sha, "s3://engines/prod"))
    # Unsigned: the store's AWS_* identity in the same environment never signs a source GET.
    assert _source_gets(s3, "public/") == [None]
    store_auth = [a for k, a in s3.gets if k.startswith("engines/")]
    assert store_auth
    assert all(a and f"Credential={STORE_KEY_ID}/" in a for a in store_auth)


def test_s3_source_is_signed_with_the_source_credentials_only(
    s3: type[_S3], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sha = save_model(MODEL, "onnx", tmp_path / "src")
    s3.objects["private/mlp.onnx"] = path.read_bytes()
    monkeypatch.setenv(SOURCE_CREDENTIAL_ENV["AWS_ACCESS_KEY_ID"], SOURCE_KEY_ID)
    monkeypatch.setenv(SOURCE_CREDENTIAL_ENV["AWS_SECRET_ACCESS_KEY"], "source-secret")
    build(make_request("s3://private/mlp.onnx", sha, "s3://engines/prod"))
    (auth,) = _source_gets(s3, "private/")
    assert auth is not None
    assert f"Credential={SOURCE_KEY_ID}/" in auth
    assert STORE_KEY_ID not in auth


def test_checksum_mismatch_shows_only_a_prefix_of_the_real_digest(
    s3: type[_S3], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, sha = save_model(MODEL, "onnx", tmp_path / "src")
    s3.objects["public/mlp.onnx"] = path.read_bytes()
    store = tmp_path / "store"
    code, summary = run_job(make_request("s3://public/mlp.onnx", "0" * 64, store), capsys)
    assert (code, summary.reason) == (EXIT_INPUT, "ChecksumMismatch")
    message = summary.message or ""
    assert sha not in message  # a second try with the echoed digest must not be possible
    assert sha[:8] in message
    assert "spec.model.source.sha256" in message
    assert_nothing_published(store)


def test_scratch_space_is_checked_before_a_byte_is_written(tmp_path: Path) -> None:
    from modelops_builder.fetch import check_scratch
    from modelops_contract.scratch import scratch_bytes, scratch_quantity

    assert scratch_bytes(20 * 1024**3) == 41 * 1024**3  # the Job's /tmp sizeLimit, default cap
    assert scratch_quantity(20 * 1024**3) == "41Gi"
    check_scratch(tmp_path, 1 << 20)  # a 1 MiB model fits anywhere
    with pytest.raises(BuildError) as caught:
        check_scratch(tmp_path, 1 << 50)  # a 1 PiB model fits nowhere
    assert (caught.value.reason, caught.value.kind) == ("ScratchSpaceTooSmall", "infrastructure")
    assert "MODELOPS_WORK_DIR" in caught.value.message
