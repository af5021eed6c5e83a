"""Fetch the model into the work directory while hashing it; nothing parses unverified bytes.

Sources: plain paths and file://, pvc://CLAIM/PATH (a claim mounted under MODELOPS_PVC_ROOT,
default /mnt/pvc), https:// (streamed, size-limited, retried on 5xx and connection errors, an
optional MODELOPS_HTTP_AUTHORIZATION header) and s3://BUCKET/KEY (boto3, credentials from the
environment, AWS_ENDPOINT_URL honoured). Every source is copied, so the bytes parsed later are
exactly the bytes hashed here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from .errors import BuildError, ErrorKind

log = logging.getLogger(__name__)

CHUNK = 1 << 20
PVC_ROOT_ENV, DEFAULT_PVC_ROOT = "MODELOPS_PVC_ROOT", "/mnt/pvc"
AUTH_ENV = "MODELOPS_HTTP_AUTHORIZATION"
RETRIES_ENV, TIMEOUT_ENV = "MODELOPS_FETCH_RETRIES", "MODELOPS_FETCH_TIMEOUT"
BACKOFF_BASE_S = 0.5


class _Retryable(Exception):
    """A transient failure (5xx, connection refused/reset, timeout): try again."""


def _settings() -> tuple[int, float]:
    retries = int(os.environ.get(RETRIES_ENV, "3"))
    timeout = float(os.environ.get(TIMEOUT_ENV, "60"))
    return max(0, retries), timeout


def _copy_hashing(chunks: Iterator[bytes], dest: Path, max_bytes: int, what: str) -> str:
    digest, size = hashlib.sha256(), 0
    with dest.open("wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise BuildError(
                    "SourceTooLarge", f"{what} exceeds maxDownloadBytes ({max_bytes} bytes)"
                )
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    yield from iter(lambda: handle.read(CHUNK), b"")


def local_path(uri: str) -> Path | None:
    """The file a plain path, file:// or pvc:// URI names; None for remote schemes."""
    parts = urlsplit(uri)
    if parts.scheme == "":
        return Path(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme == "pvc":
        return _pvc_path(parts.netloc, unquote(parts.path))
    return None


def _pvc_path(claim: str, path: str) -> Path:
    relative = PurePosixPath(path.lstrip("/"))
    if not claim or not relative.parts or ".." in relative.parts or "/" in claim or claim == "..":
        raise BuildError("InvalidSource", f"pvc://{claim}{path}: want pvc://CLAIM/PATH, no '..'")
    root = Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT)) / claim
    resolved = (root / relative).resolve()
    # Symlinks inside the claim must not lead out of it either.
    if not resolved.is_relative_to(root.resolve()):
        raise BuildError("InvalidSource", f"pvc://{claim}{path} resolves outside the claim")
    return resolved


def _fetch_local(path: Path, dest: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as handle:
            return _copy_hashing(_read_chunks(handle), dest, max_bytes, str(path))
    except FileNotFoundError as exc:
        raise BuildError("FetchFailed", f"{path} does not exist") from exc
    except IsADirectoryError as exc:
        raise BuildError("FetchFailed", f"{path} is a directory, not a model file") from exc
    except PermissionError as exc:
        raise BuildError("FetchFailed", f"{path}: permission denied") from exc


def _https_once(uri: str, dest: Path, max_bytes: int, timeout: float) -> str:
    # Only https:// reaches here (fetch() dispatches by scheme), never file: or custom schemes.
    request = urllib.request.Request(uri, headers={"User-Agent": "modelops-builder"})  # noqa: S310
    if auth := os.environ.get(AUTH_ENV):
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise BuildError(
                    "SourceTooLarge",
                    f"{uri} is {length} bytes, over maxDownloadBytes ({max_bytes} bytes)",
                )
            return _copy_hashing(_read_chunks(response), dest, max_bytes, uri)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code} from {uri}") from exc
        # 4xx: the URI or its credentials are wrong; retrying cannot help.
        raise BuildError("FetchFailed", f"HTTP {exc.code} {exc.reason} from {uri}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"cannot reach {uri}: {reason}") from exc


def _fetch_https(uri: str, dest: Path, max_bytes: int) -> str:
    retries, timeout = _settings()
    for attempt in range(retries + 1):
        try:
            return _https_once(uri, dest, max_bytes, timeout)
        except _Retryable as exc:
            if attempt == retries:
                raise BuildError(
                    "FetchFailed", f"{exc} (after {retries + 1} attempts)", "infrastructure"
                ) from exc
            delay = BACKOFF_BASE_S * 2**attempt
            log.warning("%s; retrying in %.1fs", exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop always returns or raises


def s3_client() -> Any:
    """A boto3 S3 client from the environment (AWS_* variables, AWS_ENDPOINT_URL honoured)."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    # S3-compatible stores (MinIO, Ceph) behind a custom endpoint mostly need path-style URLs.
    style = "path" if endpoint else "auto"
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": style})
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of s3://BUCKET/KEY."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise BuildError("InvalidSource", f"{uri}: want s3://BUCKET/KEY")
    return parts.netloc, key


def _fetch_s3(uri: str, dest: Path, max_bytes: int) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    try:
        response = s3_client().get_object(Bucket=bucket, Key=key)
        length = int(response.get("ContentLength") or 0)
        if length > max_bytes:
            raise BuildError(
                "SourceTooLarge", f"{uri} is {length} bytes, over maxDownloadBytes ({max_bytes})"
            )
        body = response["Body"]
        return _copy_hashing(iter(lambda: body.read(CHUNK), b""), dest, max_bytes, uri)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        kind: ErrorKind = "input" if 400 <= status < 500 else "infrastructure"
        raise BuildError("FetchFailed", f"{uri}: {code or status} {exc}", kind) from exc
    except BotoCoreError as exc:  # no credentials, endpoint unreachable, ...
        raise BuildError("FetchFailed", f"{uri}: {exc}", "infrastructure") from exc


def fetch(uri: str, sha256: str, dest: Path, *, max_bytes: int) -> Path:
    """Copy the source to `dest` while hashing; fail before anything parses it on a mismatch."""
    scheme = urlsplit(uri).scheme
    path = local_path(uri)
    if path is not None:
        actual = _fetch_local(path, dest, max_bytes)
    elif scheme == "https":
        actual = _fetch_https(uri, dest, max_bytes)
    elif scheme == "s3":
        actual = _fetch_s3(uri, dest, max_bytes)
    else:
        raise BuildError(
            "InvalidSource", f"{uri}: unsupported scheme {scheme!r} (https, s3, pvc, file)"
        )
    if actual != sha256:
        dest.unlink(missing_ok=True)
        raise BuildError(
            "ChecksumMismatch", f"{uri}: sha256 is {actual}, the request says {sha256}"
        )
    return dest


def sha256_file(path: Path) -> str:
    """The sha256 of a local file (the CLI computes it when --sha256 is omitted)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in _read_chunks(handle):
            digest.update(chunk)
    return digest.hexdigest()
