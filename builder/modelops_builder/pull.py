"""`modelops-build pull`: copy a published engine's version dir out of the store, verified.

A Triton pod's init container runs `modelops-build pull --server URL --token T --key K
--manifest-sha256 M --dest /models/<md>/1`: it reads the entry from the engine server (it holds
neither the store nor any store credential), checks engine.json against the digest the operator
pinned after verifying its MAC, and every file against engine.json's sha256 before renaming it
into place. A person (or a script) can pull straight from a store (`--store`) with the store's
key in MODELOPS_STORE_MAC_KEY instead. Nothing that fails a check is ever left in DEST: it fails
with `EngineTampered`, which the operator reads as "rebuild this entry".

Each file is written to a temporary name in the destination and renamed, so a restarted init
container never sees half a file; a file already there with the right sha256 is kept.
Light module: pydantic and (for s3) boto3 only.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from modelops_contract.key import KEY_PREFIX, key_digest
from modelops_contract.layout import MANIFEST_NAME
from modelops_contract.manifest import EntryFile
from modelops_contract.staging import entry_url

from .entry_paths import safe_entry_path
from .errors import BuildError, ErrorKind
from .seal import CHUNK, check_listed_file, hash_stream, mac_key_from_env, trusted_manifest
from .store import Store, open_store

PARTIAL_PREFIX = ".pull-"
_DIGEST = re.compile(r"[0-9a-f]{64}")
TIMEOUT_S = 60.0


class EntrySource(Protocol):
    """Where an entry's bytes come from: the store itself, or the engine server."""

    @property
    def where(self) -> str:
        """The entry's location, for messages."""
        ...

    def manifest_bytes(self) -> bytes | None:
        """engine.json as stored, None when there is no entry."""
        ...

    def open(self, path: str) -> BinaryIO:
        """One file of the entry (path relative to the entry)."""
        ...


@dataclass
class StoreSource:
    """A store read directly (a person with the store, or a script)."""

    store: Store
    digest: str

    @property
    def where(self) -> str:
        """The entry's location."""
        return self.store.location(self.digest)

    def manifest_bytes(self) -> bytes | None:
        """engine.json from the store."""
        return self.store.read_manifest_bytes(self.digest)

    def open(self, path: str) -> BinaryIO:
        """A file from the store."""
        return self.store.open_file(self.digest, path)


@dataclass
class ServerSource:
    """The engine server in the operator's namespace, with the entry's read token."""

    server: str
    digest: str
    token: str

    @property
    def where(self) -> str:
        """The entry's URL on the server."""
        return entry_url(self.server, self.digest, "").rstrip("/")

    def _get(self, path: str) -> BinaryIO:
        url = entry_url(self.server, self.digest, path)
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.token}"})  # noqa: S310
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # type: ignore[no-any-return]  # noqa: S310
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise FileNotFoundError(url) from exc
            kind: ErrorKind = "input" if exc.code in (401, 403) else "infrastructure"
            raise BuildError("PullFailed", f"{url}: HTTP {exc.code} {exc.reason}", kind) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            message = f"cannot reach the engine server at {self.server}: {exc}"
            raise BuildError("StoreUnavailable", message, "infrastructure") from exc

    def manifest_bytes(self) -> bytes | None:
        """engine.json from the server; None on 404."""
        try:
            with self._get(MANIFEST_NAME) as response:
                return response.read()
        except FileNotFoundError:
            return None

    def open(self, path: str) -> BinaryIO:
        """A file from the server (the server serves only files engine.json lists)."""
        try:
            return self._get(path)
        except FileNotFoundError as exc:
            raise BuildError(
                "EngineIncomplete", f"{self.where}/{path} is missing", "infrastructure"
            ) from exc


@dataclass
class PullResult:
    """What pull() did: which files it fetched and which it found already in place."""

    key: str
    entry_uri: str
    dest: Path
    model_name: str
    model_file: str
    requested_model: str | None
    fetched: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    fetched_bytes: int = 0

    def line(self) -> str:
        """One human line for the init container's log."""
        verb = "pulled" if self.fetched else "already in place:"
        counts = f"{len(self.fetched)} fetched ({_size(self.fetched_bytes)}), {len(self.kept)} kept"
        text = (
            f"{verb} {self.key} model {self.model_name!r} ({self.model_file}) "
            f"from {self.entry_uri} into {self.dest}: {counts}, every sha256 checked"
        )
        if self.requested_model not in (None, self.model_name):
            text += (
                f"; the entry holds model {self.model_name!r}, not {self.requested_model!r}:"
                f" pulled {self.model_name!r}"
            )
        return text


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def key_digest_of(key: str) -> str:
    """The hex digest of `sha256:<hex>`; BuildError InvalidRequest for anything else."""
    digest = key_digest(key.strip())
    if not _DIGEST.fullmatch(digest):
        raise BuildError("InvalidRequest", f"--key {key!r}: want {KEY_PREFIX}<64 lowercase hex>")
    return digest


def _clean_partials(dest: Path) -> None:
    """Temporary files of a pull that was killed midway."""
    for path in dest.rglob(f"{PARTIAL_PREFIX}*"):
        if path.is_file():
            path.unlink(missing_ok=True)


def open_source(
    key: str, *, store: str | None = None, server: str | None = None, token: str | None = None
) -> EntrySource:
    """The entry's source: the engine server (with its token) or a store."""
    digest = key_digest_of(key)
    if server is not None:
        return ServerSource(server, digest, token or "")
    if store is None:
        raise BuildError("InvalidRequest", "pull needs --server or --store")
    return StoreSource(open_store(store), digest)


def pull(
    source: EntrySource,
    key: str,
    dest: Path,
    model: str | None = None,
    *,
    manifest_sha256: str | None = None,
) -> PullResult:
    """Copy `repository/<model>/1/*` of the entry into `dest`, every byte checked."""
    raw = source.manifest_bytes()
    if raw is None:
        raise BuildError(
            "EngineNotFound",
            f"no complete engine for {key} at {source.where} ({MANIFEST_NAME} is missing)",
        )
    mac_key = None if manifest_sha256 else mac_key_from_env()
    manifest = trusted_manifest(raw, where=source.where, mac_key=mac_key, pinned=manifest_sha256)
    folder = manifest.version_folder()
    listed = [f for f in manifest.files if f.path.startswith(folder + "/")]
    names = {f.path.removeprefix(folder + "/") for f in listed}
    missing = [name for name in manifest.engine_files() if name not in names]
    if missing:
        raise BuildError(
            "EngineIncomplete",
            f"{source.where}/{folder}: engine.json lists no {', '.join(missing)}",
            "infrastructure",
        )
    result = PullResult(
        key=key.strip(),
        entry_uri=source.where,
        dest=dest,
        model_name=manifest.model_name,
        model_file=manifest.model_file,
        requested_model=model,
    )
    try:
        dest.mkdir(parents=True, exist_ok=True)
        _clean_partials(dest)
    except OSError as exc:
        raise BuildError("PullFailed", f"cannot write {dest}: {exc}", "infrastructure") from exc
    for entry in listed:
        name = entry.path.removeprefix(folder + "/")
        target = dest.joinpath(*safe_entry_path(name).parts)
        if _already_there(target, entry):
            result.kept.append(name)
            continue
        _fetch_one(source, entry, target)
        result.fetched.append(name)
        result.fetched_bytes += entry.size
    return result


def _already_there(target: Path, entry: EntryFile) -> bool:
    if not target.is_file() or target.is_symlink() or target.stat().st_size != entry.size:
        return False
    with target.open("rb") as handle:
        return hash_stream(handle)[0] == entry.sha256


@contextmanager
def _partial(target: Path) -> Iterator[Path]:
    tmp = target.with_name(f"{PARTIAL_PREFIX}{target.name}-{secrets.token_hex(4)}")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_one(source: EntrySource, entry: EntryFile, target: Path) -> None:
    """Download to `.pull-<name>-<random>` while hashing, check, fsync, rename."""
    with _partial(target) as tmp:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            digest, size = hashlib.sha256(), 0
            with source.open(entry.path) as body, tmp.open("wb") as out:
                for chunk in iter(lambda: body.read(CHUNK), b""):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise BuildError(
                "PullFailed",
                f"cannot copy {source.where}/{entry.path} to {target}: {exc}",
                "infrastructure",
            ) from exc
        check_listed_file(entry, digest.hexdigest(), size, source.where)
        os.replace(tmp, target)
