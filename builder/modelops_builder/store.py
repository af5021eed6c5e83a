"""The engine store: complete entries only, published atomically.

A directory store (a path or file:// URI) stages an entry under `<store>/.tmp-<digest>-<random>/`
(same filesystem) and publishes it with one `os.rename`: readers see no entry or a complete one.
An s3:// store (store_s3.py) stages locally, uploads every file, and uploads `engine.json` last:
an entry without engine.json is incomplete and ignored, so engine.json is the commit marker.
Store-level files (TensorRT timing caches) live under `<store>/_timing_cache/`.

Reading an entry back (`read_manifest_bytes`, `open_file`) never follows a link out of the
entry: whoever serves a file serves the bytes engine.json lists, or nothing.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from modelops_contract.layout import MANIFEST_NAME
from modelops_contract.manifest import EngineManifest, read_manifest

from .entry_paths import safe_entry_path
from .errors import BuildError

log = logging.getLogger(__name__)

STAGING_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# Staging directories older than this belong to builds that died: removed on the next build.
STALE_STAGING_S = 24 * 3600
DOWNLOAD_CHUNK_BYTES = 1 << 20


class Store(Protocol):
    """Where entries live; `stage` then `publish` (or `discard`) for each build."""

    uri: str

    def lookup(self, digest: str) -> tuple[EngineManifest, Path] | None:
        """The complete entry for a key digest (manifest and local dir), or None."""
        ...

    def location(self, digest: str) -> str:
        """Where the entry is (or will be) published, in the store's own URI style."""
        ...

    def stage(self, digest: str) -> Path:
        """A fresh, empty local directory to write the entry into."""
        ...

    def publish(self, digest: str, staging: Path) -> Path:
        """Make the staged entry visible atomically; the published local dir."""
        ...

    def discard(self, staging: Path) -> None:
        """Remove a staged entry that will not be published."""
        ...

    def remove_entry(self, digest: str) -> None:
        """Take a published entry away (a bad one, before it is rebuilt): engine.json first."""
        ...

    def read_blob(self, name: str) -> bytes | None:
        """A store-level file (e.g. a timing cache), None when absent."""
        ...

    def write_blob(self, name: str, data: bytes) -> None:
        """Replace a store-level file atomically."""
        ...

    def read_manifest_bytes(self, digest: str) -> bytes | None:
        """engine.json of an entry exactly as stored, None when absent."""
        ...

    def open_file(self, digest: str, name: str) -> BinaryIO:
        """A file of an entry for reading; BuildError StoreUnavailable when it cannot be read."""
        ...


def _store_error(
    action: str, where: object, exc: BaseException, reason: str = "StoreWriteFailed"
) -> BuildError:
    return BuildError(reason, f"cannot {action} {where}: {exc}", "infrastructure")


class LocalStore:
    """A directory (local disk, or a PVC mounted into the Job)."""

    def __init__(self, root: Path, uri: str) -> None:
        self.root, self.uri = root, uri

    def lookup(self, digest: str) -> tuple[EngineManifest, Path] | None:
        """The complete entry for a key digest, or None."""
        entry = self.root / digest
        manifest = read_manifest(entry)
        return (manifest, entry) if manifest is not None else None

    def location(self, digest: str) -> str:
        """`<store uri>/<digest>`."""
        return f"{self.uri.rstrip('/')}/{digest}"

    def stage(self, digest: str) -> Path:
        """`<store>/.tmp-<digest>-<random>/`, on the store's filesystem so rename is atomic."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._clean_stale()
            staging = self.root / f"{STAGING_PREFIX}{digest}-{secrets.token_hex(4)}"
            staging.mkdir()
        except OSError as exc:
            raise _store_error("write to the store", self.root, exc) from exc
        return staging

    def _clean_stale(self) -> None:
        now = time.time()
        for path in self.root.glob(f"{STAGING_PREFIX}*"):
            try:
                if now - path.stat().st_mtime > STALE_STAGING_S:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                continue

    def publish(self, digest: str, staging: Path) -> Path:
        """rename(staging, <store>/<digest>); a concurrent complete entry wins and is kept."""
        final = self.root / digest
        try:
            _fsync_tree(staging)
            os.rename(staging, final)
            return final
        except OSError as exc:
            error: OSError = exc
        if read_manifest(final) is not None:
            # Another publisher of the same key was first: only publishers can write here, and
            # they checked what they published.
            log.info("entry %s appeared concurrently; keeping it", digest)
            self.discard(staging)
            return final
        if final.exists():
            # A leftover without engine.json (copied by hand, crashed tool): move it aside.
            try:
                self.remove_entry(digest)
                os.rename(staging, final)
                return final
            except (OSError, BuildError) as again:
                error = again if isinstance(again, OSError) else OSError(str(again))
        self.discard(staging)
        raise _store_error("publish into", final, error) from error

    def discard(self, staging: Path) -> None:
        """Remove a staging directory."""
        shutil.rmtree(staging, ignore_errors=True)

    def remove_entry(self, digest: str) -> None:
        """Rename the entry aside (readers see it gone at once), then delete it."""
        final = self.root / digest
        trash = self.root / f"{TRASH_PREFIX}{digest}-{secrets.token_hex(4)}"
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _store_error("remove", final, exc) from exc
        shutil.rmtree(trash, ignore_errors=True)

    def read_blob(self, name: str) -> bytes | None:
        """A store-level file, None when absent or unreadable."""
        try:
            return (self.root / name).read_bytes()
        except OSError:
            return None

    def write_blob(self, name: str, data: bytes) -> None:
        """Write to a temporary name, then os.replace."""
        path = self.root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{STAGING_PREFIX}{path.name}-{secrets.token_hex(4)}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise _store_error("write", path, exc) from exc

    def read_manifest_bytes(self, digest: str) -> bytes | None:
        """engine.json as stored; None when absent (or not a regular file)."""
        try:
            with self.open_file(digest, MANIFEST_NAME) as handle:
                return handle.read()
        except BuildError:
            return None

    def open_file(self, digest: str, name: str) -> BinaryIO:
        """Open `<store>/<digest>/<name>` without following a link anywhere on the way."""
        entry = self.root / digest
        path = entry.joinpath(*safe_entry_path(name).parts)
        try:
            if not path.resolve().is_relative_to(entry.resolve()) or path.is_symlink():
                raise OSError(f"{path} leads out of its entry")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(f"{path} is not a regular file")
            return os.fdopen(fd, "rb")
        except OSError as exc:
            raise _store_error("read", path, exc, "StoreUnavailable") from exc


def _fsync_tree(root: Path) -> None:
    """Flush the staged files, so a crash after the rename cannot leave empty files behind."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def open_store(uri: str) -> Store:
    """A Store for a directory, file:// or s3:// URI."""
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise BuildError("InvalidStore", f"{uri}: want s3://BUCKET[/PREFIX]")
        from .store_s3 import S3Store

        return S3Store(parts.netloc, parts.path, uri)
    if parts.scheme == "file":
        return LocalStore(Path(unquote(parts.path)), uri)
    if parts.scheme == "":
        return LocalStore(Path(uri).absolute(), uri)
    raise BuildError("InvalidStore", f"{uri}: the store must be a directory, file:// or s3://")
