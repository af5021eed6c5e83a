"""`modelops-build stage`: the source Job, run in the tenant's namespace with the tenant's
credentials; it fetches the model and streams it to the engine server, which answers with a
receipt only when the bytes have the sha256 asked for (modelops_contract.staging).

Nothing is written to disk here: the bytes go from the source to the server as they arrive, and
the sha256 is computed on the way as well, so a mismatch is reported in the fetch's own words.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from modelops_contract.credentials import dataset_environ
from modelops_contract.staging import OWNER_HEADER, StageRequest, StageSummary, source_url

from .errors import BuildError, ErrorKind
from .fetch import fetch

log = logging.getLogger(__name__)

TIMEOUT_S = 60.0


class ServerSink:
    """Streams the fetched chunks to the engine server in one chunked PUT; remembers its answer.

    fetch() may call it more than once (a retried download): each call is a fresh PUT.
    """

    def __init__(self, request: StageRequest) -> None:
        self.request = request
        self.answer: dict[str, object] = {}

    def __call__(self, chunks: Iterator[bytes], size: int | None) -> str:
        import hashlib

        digest, total = hashlib.sha256(), 0
        limit = self.request.max_download_bytes

        def body() -> Iterator[bytes]:
            nonlocal total
            for chunk in chunks:
                total += len(chunk)
                if total > limit:
                    raise BuildError(
                        "SourceTooLarge",
                        f"{self.request.source_uri} exceeds maxDownloadBytes ({limit} bytes)",
                    )
                digest.update(chunk)
                yield chunk

        self.answer = self._put(body())
        return digest.hexdigest()

    def _put(self, body: Iterator[bytes]) -> dict[str, object]:
        url = source_url(self.request.server, self.request.sha256)
        parts = urlsplit(url)
        connection_type = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_type(parts.netloc, timeout=TIMEOUT_S)
        headers = {
            "Authorization": f"Bearer {self.request.token}",
            OWNER_HEADER: self.request.owner,
            "Content-Type": "application/octet-stream",
        }
        path = f"{parts.path}?{self.request.put_query()}"
        try:
            connection.request("PUT", path, body=body, headers=headers, encode_chunked=True)
            response = connection.getresponse()
            text = response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            raise BuildError(
                "StoreUnavailable",
                f"cannot send the source to the engine server {self.request.server}: {exc}",
                "infrastructure",
            ) from exc
        finally:
            connection.close()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {"message": text[:500]}
        if response.status == 400 and answer.get("reason") == "ChecksumMismatch":
            return {}  # fetch() compares the digests itself and says so in its own words
        if response.status != 200:
            reason = str(answer.get("reason") or "StoreRefused")
            message = str(answer.get("message") or f"HTTP {response.status}")
            # A tenant's own limits (size, its inbox quota) are its input; the rest is the server.
            kind: ErrorKind = "input" if response.status in (400, 413, 507) else "infrastructure"
            raise BuildError(reason, f"the engine server refused the source: {message}", kind)
        return dict(answer)


def _send(request: StageRequest, environ: Mapping[str, str] | None) -> dict[str, object]:
    """Fetch one file into the engine server; the server's answer (with its receipt)."""
    sink = ServerSink(request)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / "modelops-stage"  # noqa: S108
    # fetch() writes through its sink only; `dest` names where a local copy would have gone.
    fetch(
        request.source_uri,
        request.sha256,
        scratch,
        max_bytes=request.max_download_bytes,
        environ=environ,
        sink=sink,
    )
    if not sink.answer.get("receipt"):
        raise BuildError(
            "StoreRefused",
            f"the engine server gave no receipt for {request.source_uri} (bytes changed on the "
            "way?)",
            "infrastructure",
        )
    return sink.answer


def stage(request: StageRequest, environ: Mapping[str, str] | None = None) -> StageSummary:
    """Fetch the source (the tenant's credentials) into the engine server, then the build's
    data sets (each with its own credentials); the summary with every receipt."""
    answer = _send(request, environ)
    receipts = {}
    for index, data in enumerate(request.datasets):
        one = request.model_copy(
            update={
                "source_uri": data.source_uri,
                "sha256": data.sha256,
                "token": data.token,
                "max_download_bytes": data.max_download_bytes,
                "keep": True,
                "datasets": [],
            }
        )
        own = dataset_environ(os.environ if environ is None else environ, index)
        receipts[data.sha256] = str(_send(one, own).get("receipt"))
    size = answer.get("bytes")
    return StageSummary(
        ok=True,
        sha256=request.sha256,
        bytes=int(size) if isinstance(size, int) else None,
        kept=bool(answer.get("kept")),
        receipt=str(answer.get("receipt") or ""),
        dataset_receipts=receipts or None,
    )
