"""Download a model from https:// or s3:// with the user's source credentials, and only those.

The credentials come from the allow-listed `MODELOPS_SOURCE_*` variables
(`modelops_contract.credentials`); nothing here reads the store's `AWS_*` variables, shared AWS
config files or an instance profile. An s3:// source without credentials is fetched anonymously
(unsigned requests: a public bucket works, a private one answers 403). https redirects are
followed only to https://, and `Authorization` is dropped as soon as the origin changes.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from http.client import HTTPMessage
from typing import IO, Any
from urllib.parse import urlsplit

from modelops_contract import credentials as cred

from .errors import BuildError, ErrorKind

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRIES_ENV, TIMEOUT_ENV = "MODELOPS_FETCH_RETRIES", "MODELOPS_FETCH_TIMEOUT"
BACKOFF_BASE_S = 0.5
MAX_REDIRECTS = 5
DEFAULT_S3_REGION = "us-east-1"

# Copies the chunks (and the size when announced) to a file while hashing; the hex digest.
Sink = Callable[[Iterator[bytes], int | None], str]


class _Retryable(Exception):
    """A transient failure (5xx, connection refused/reset, timeout): try again."""


def _settings() -> tuple[int, float]:
    retries = int(os.environ.get(RETRIES_ENV, "3"))
    timeout = float(os.environ.get(TIMEOUT_ENV, "60"))
    return max(0, retries), timeout


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    """Follow https -> https only; a new origin never sees the source's Authorization header."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme, host, _ = _origin(newurl)
        if scheme != "https":
            raise BuildError(
                "FetchFailed",
                f"{req.full_url} redirects to a {scheme or 'relative'}:// URL on {host or '?'}: "
                "only https:// redirects are followed; point sourceUri at the final https:// URL",
            )
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            # The credentials belong to the origin the user named, not to whoever it sends us to.
            new.remove_header("Authorization")
            log.info("redirected to another origin (%s): Authorization dropped", host)
        return new


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    yield from iter(lambda: handle.read(CHUNK), b"")


def _https_once(uri: str, sink: Sink, max_bytes: int, timeout: float, auth: str | None) -> str:
    # Only https:// reaches here (fetch() dispatches by scheme), never file: or custom schemes.
    request = urllib.request.Request(uri, headers={"User-Agent": "modelops-builder"})  # noqa: S310
    if auth:
        request.add_header("Authorization", auth)
    opener = urllib.request.build_opener(_RedirectPolicy())
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            size = int(length) if length is not None and length.isdigit() else None
            if size is not None and size > max_bytes:
                raise BuildError(
                    "SourceTooLarge",
                    f"{uri} is {size} bytes, over maxDownloadBytes ({max_bytes} bytes)",
                )
            return sink(_read_chunks(response), size)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code} from {uri}") from exc
        # 4xx: the URI or its credentials are wrong; retrying cannot help.
        raise BuildError("FetchFailed", f"HTTP {exc.code} {exc.reason} from {uri}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"cannot reach {uri}: {reason}") from exc


def fetch_https(uri: str, sink: Sink, max_bytes: int, environ: Mapping[str, str]) -> str:
    """Stream an https:// source into `sink`, retried with backoff on transient failures."""
    auth = cred.source_credentials(environ).get(cred.HTTP_AUTHORIZATION)
    return _with_retries(lambda timeout: _https_once(uri, sink, max_bytes, timeout, auth))


def _with_retries(once: Callable[[float], str]) -> str:
    """`once(timeout)`, tried again with backoff while it fails transiently (_Retryable)."""
    retries, timeout = _settings()
    for attempt in range(retries + 1):
        try:
            return once(timeout)
        except _Retryable as exc:
            if attempt == retries:
                raise BuildError(
                    "FetchFailed", f"{exc} (after {retries + 1} attempts)", "infrastructure"
                ) from exc
            delay = BACKOFF_BASE_S * 2**attempt
            log.warning("%s; retrying in %.1fs", exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop always returns or raises


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The engine server never redirects: a redirect is an error, never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _staged_once(url: str, token: str, sink: Sink, max_bytes: int, timeout: float) -> str:
    # The engine server's in-cluster URL (http:// inside the cluster): never a user's URL.
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirects())
    try:
        with opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            size = int(length) if length is not None and length.isdigit() else None
            if size is not None and size > max_bytes:
                raise BuildError("SourceTooLarge", f"the staged source is {size} bytes")
            return sink(_read_chunks(response), size)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code} from the engine server") from exc
        if exc.code == 404:
            raise BuildError(
                "SourceNotStaged",
                f"{url}: the engine server no longer holds the source (restarted, or kept it "
                "past its inbox TTL): retry the build (modelops.dev/retry) to send it again",
                "infrastructure",
            ) from exc
        raise BuildError(
            "FetchFailed", f"HTTP {exc.code} {exc.reason} from {url}", "infrastructure"
        ) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise _Retryable(f"cannot reach the engine server: {getattr(exc, 'reason', exc)}") from exc


def fetch_staged(url: str, token: str, sink: Sink, max_bytes: int) -> str:
    """Stream a source the source Job sent to the engine server (a cluster build's input)."""
    return _with_retries(lambda timeout: _staged_once(url, token, sink, max_bytes, timeout))


def source_s3_client(environ: Mapping[str, str]) -> Any:
    """An S3 client for the model source: the user's credentials, or unsigned requests.

    Its botocore session has no credential providers at all, so neither the store's `AWS_*`
    variables nor a shared config file nor the node's instance profile can sign a request, and
    configured endpoint URLs (the store's `AWS_ENDPOINT_URL`) are ignored.
    """
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.credentials import CredentialResolver

    found = cred.source_credentials(environ)
    session = botocore.session.Session()
    session.register_component("credential_provider", CredentialResolver(providers=[]))
    endpoint = found.get(cred.AWS_ENDPOINT_URL)
    signed = cred.AWS_ACCESS_KEY_ID in found and cred.AWS_SECRET_ACCESS_KEY in found
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint else "auto"},
        ignore_configured_endpoint_urls=True,
        signature_version=None if signed else UNSIGNED,
    )
    return session.create_client(
        "s3",
        region_name=found.get(cred.AWS_REGION, DEFAULT_S3_REGION),
        endpoint_url=endpoint,
        aws_access_key_id=found.get(cred.AWS_ACCESS_KEY_ID) if signed else None,
        aws_secret_access_key=found.get(cred.AWS_SECRET_ACCESS_KEY) if signed else None,
        aws_session_token=found.get(cred.AWS_SESSION_TOKEN) if signed else None,
        config=config,
    )


def split_s3(uri: str) -> tuple[str, str]:
    """(bucket, key) of s3://BUCKET/KEY."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise BuildError("InvalidSource", f"{uri}: want s3://BUCKET/KEY")
    return parts.netloc, key


def fetch_s3(uri: str, sink: Sink, max_bytes: int, environ: Mapping[str, str]) -> str:
    """Stream an s3:// source into `sink` with the source's own client."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_s3(uri)
    try:
        response = source_s3_client(environ).get_object(Bucket=bucket, Key=key)
        length = int(response.get("ContentLength") or 0)
        if length > max_bytes:
            raise BuildError(
                "SourceTooLarge", f"{uri} is {length} bytes, over maxDownloadBytes ({max_bytes})"
            )
        body = response["Body"]
        return sink(iter(lambda: body.read(CHUNK), b""), length or None)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        kind: ErrorKind = "input" if 400 <= status < 500 else "infrastructure"
        hint = ""
        if status == 403 and not cred.source_credentials(environ):
            hint = (
                " (fetched anonymously: give spec.model.source.credentialsSecret with "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for a private bucket)"
            )
        raise BuildError("FetchFailed", f"{uri}: {code or status} {exc}{hint}", kind) from exc
    except BotoCoreError as exc:  # endpoint unreachable, ...
        raise BuildError("FetchFailed", f"{uri}: {exc}", "infrastructure") from exc
