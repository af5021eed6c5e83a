"""Fetch the model into the work directory while hashing it; nothing parses unverified bytes.

Sources: pvc://CLAIM/PATH (a claim mounted under MODELOPS_PVC_ROOT, default /mnt/pvc), https://
and s3://BUCKET/KEY (fetch_remote: the user's source credentials only), and, for `modelops dev`
and `modelops-build MODEL` only, plain paths and file://. Every source is copied, so the bytes
parsed later are exactly the bytes hashed here. Before a byte is written the work dir must have
room for the source twice (the builder's scratch budget, modelops_contract.scratch).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import unquote, urlsplit

from modelops_contract.quantization import StagedSource
from modelops_contract.scratch import scratch_bytes

from .errors import BuildError
from .fetch_remote import CHUNK, Sink, fetch_https, fetch_s3, fetch_staged, split_s3

__all__ = ["check_source_allowed", "fetch", "local_path", "sha256_file", "split_s3"]

PVC_ROOT_ENV, DEFAULT_PVC_ROOT = "MODELOPS_PVC_ROOT", "/mnt/pvc"
# A mismatch shows only this much of the digest actually received: enough to tell two files
# apart, too little to paste into the spec and make an unverified file pass.
SHOWN_DIGEST_CHARS = 8


def _read_chunks(handle: IO[bytes]) -> Iterator[bytes]:
    yield from iter(lambda: handle.read(CHUNK), b"")


def check_scratch(folder: Path, size: int | None) -> None:
    """Fail early, as infrastructure, when `folder` cannot hold a build of a `size`-byte model."""
    if size is None:
        return
    need = scratch_bytes(size)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise BuildError(
            "ScratchSpaceTooSmall",
            f"the work dir {folder} has {free / 1024**3:.1f} GiB free; a {size / 1024**3:.2f} GiB "
            f"source needs {need / 1024**3:.1f} GiB (twice the model plus 1 GiB): give the build "
            "a larger /tmp (ephemeral storage) or set MODELOPS_WORK_DIR to a bigger volume",
            "infrastructure",
        )


class _Sink:
    """Writes chunks to `dest` while hashing and counting them against the download cap."""

    def __init__(self, dest: Path, max_bytes: int, what: str) -> None:
        self.dest, self.max_bytes, self.what = dest, max_bytes, what

    def __call__(self, chunks: Iterator[bytes], size: int | None) -> str:
        check_scratch(self.dest.parent, size)
        digest, total = hashlib.sha256(), 0
        with self.dest.open("wb") as out:
            for chunk in chunks:
                total += len(chunk)
                if total > self.max_bytes:
                    raise BuildError(
                        "SourceTooLarge",
                        f"{self.what} exceeds maxDownloadBytes ({self.max_bytes} bytes)",
                    )
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()


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


def _fetch_local(path: Path, sink: Sink) -> str:
    try:
        with path.open("rb") as handle:
            return sink(_read_chunks(handle), os.fstat(handle.fileno()).st_size)
    except FileNotFoundError as exc:
        raise BuildError("FetchFailed", f"{path} does not exist") from exc
    except IsADirectoryError as exc:
        raise BuildError("FetchFailed", f"{path} is a directory, not a model file") from exc
    except PermissionError as exc:
        raise BuildError("FetchFailed", f"{path}: permission denied") from exc


def check_source_allowed(uri: str, *, local_source: bool) -> None:
    """Refuse a plain path or file:// source unless local sources were allowed (dev, CLI)."""
    if urlsplit(uri).scheme not in ("", "file") or local_source:
        return
    raise BuildError(
        "InvalidSource",
        f"sourceUri {uri}: local files (file:// or a plain path) are read only by `modelops dev` "
        "and `modelops-build MODEL`; a build Job fetches https://, s3:// or pvc://CLAIM/PATH",
    )


def fetch(
    uri: str,
    sha256: str,
    dest: Path,
    *,
    max_bytes: int,
    local_source: bool = False,
    environ: Mapping[str, str] | None = None,
    staged: StagedSource | None = None,
    sink: Sink | None = None,
) -> Path:
    """Copy the source to `dest` while hashing; fail before anything parses it on a mismatch.

    `local_source` allows plain paths and file:// (the dev loop and the human CLI); a build Job
    never sets it. `environ` (default os.environ) is where the source credentials are read.
    `staged`: a cluster build reads the bytes the source Job sent to the engine server; `uri`
    then only names them (the build Job holds no credentials of the user's). `sink`: where the
    bytes go instead of `dest` (the source Job streams them to the engine server).
    """
    scheme = urlsplit(uri).scheme
    env = os.environ if environ is None else environ
    check_source_allowed(uri, local_source=local_source)
    sink = sink or _Sink(dest, max_bytes, uri)
    path = local_path(uri)
    if staged is not None:
        actual = fetch_staged(staged.url, staged.token, sink, max_bytes)
    elif path is not None:
        actual = _fetch_local(path, sink)
    elif scheme == "https":
        actual = fetch_https(uri, sink, max_bytes, env)
    elif scheme == "s3":
        actual = fetch_s3(uri, sink, max_bytes, env)
    else:
        raise BuildError(
            "InvalidSource", f"{uri}: unsupported scheme {scheme!r} (https, s3, pvc, file)"
        )
    if actual != sha256:
        dest.unlink(missing_ok=True)
        raise BuildError(
            "ChecksumMismatch",
            f"{uri}: the file's sha256 does not match the request's {sha256} (the file's begins "
            f"{actual[:SHOWN_DIGEST_CHARS]}...): check spec.model.source.sha256 against the "
            "digest published with the model",
        )
    return dest


def sha256_file(path: Path) -> str:
    """The sha256 of a local file (the CLI computes it when --sha256 is omitted)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in _read_chunks(handle):
            digest.update(chunk)
    return digest.hexdigest()
