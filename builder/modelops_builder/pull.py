"""`modelops-build pull`: copy a published engine's version dir out of the store.

The operator cannot mount an s3:// store into a Triton pod, so it adds an init container running
`modelops-build pull --store URI --key sha256:<hex> --model NAME --dest /models/<md>/1` that fills
an emptyDir. Only a complete entry (a valid engine.json, the commit marker) is pulled. Each file
is written to a temporary name in the destination and renamed, so a restarted init container never
sees half a file; a file already there with the stored size is kept, so a rerun fetches nothing.
Light module: pydantic and (for s3) boto3 only.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from modelops_contract.key import KEY_PREFIX, key_digest
from modelops_contract.layout import REPOSITORY_DIR, VERSION_DIR

from .errors import BuildError
from .store import LocalStore, Store, open_store

PARTIAL_PREFIX = ".pull-"
_DIGEST = re.compile(r"[0-9a-f]{64}")


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
            f"from {self.entry_uri} into {self.dest}: {counts}"
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


def _digest(key: str) -> str:
    digest = key_digest(key.strip())
    if not _DIGEST.fullmatch(digest):
        raise BuildError("InvalidRequest", f"--key {key!r}: want {KEY_PREFIX}<64 lowercase hex>")
    return digest


def _safe_relative(name: str, where: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if rel.is_absolute() or not rel.parts or any(p in ("", ".", "..") for p in rel.parts):
        raise BuildError(
            "EngineIncomplete", f"{where}: unsafe file name {name!r} in the entry", "infrastructure"
        )
    return rel


def _clean_partials(dest: Path) -> None:
    """Temporary files of a pull that was killed midway."""
    for path in dest.rglob(f"{PARTIAL_PREFIX}*"):
        if path.is_file():
            path.unlink(missing_ok=True)


def pull(store_uri: str, key: str, dest: Path, model: str | None = None) -> PullResult:
    """Copy `<store>/<digest>/repository/<model>/1/*` into `dest`; raises BuildError."""
    digest = _digest(key)
    store = open_store(store_uri)
    entry_uri = store.location(digest)
    hit = store.lookup(digest)
    if hit is None:
        raise BuildError(
            "EngineNotFound",
            f"no complete engine for {key} in store {store.uri}"
            f" ({entry_uri}/engine.json is missing or invalid)",
        )
    manifest, local = hit
    if not isinstance(store, LocalStore):
        shutil.rmtree(local, ignore_errors=True)  # the s3 lookup's local copy of engine.json
    folder = f"{REPOSITORY_DIR}/{manifest.model_name}/{VERSION_DIR}"
    files = store.list_files(digest, folder)
    where = f"{entry_uri}/{folder}"
    missing = [name for name in manifest.engine_files() if name not in files]
    if missing:
        raise BuildError(
            "EngineIncomplete",
            f"{where} lacks {', '.join(missing)}, named by engine.json as the engine's files",
            "infrastructure",
        )
    result = PullResult(
        key=key.strip(),
        entry_uri=entry_uri,
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
    for name, size in sorted(files.items()):
        target = dest.joinpath(*_safe_relative(name, where).parts)
        if target.is_file() and target.stat().st_size == size:
            result.kept.append(name)
            continue
        _fetch_one(store, digest, f"{folder}/{name}", target, size, f"{where}/{name}")
        result.fetched.append(name)
        result.fetched_bytes += size
    for name in manifest.engine_files():
        engine_file = dest / name
        if not (engine_file.is_file() and engine_file.stat().st_size == files[name]):
            raise BuildError(
                "EngineIncomplete", f"{engine_file} is missing after the pull", "infrastructure"
            )
    return result


def _fetch_one(store: Store, digest: str, source: str, target: Path, size: int, where: str) -> None:
    """Download to `.pull-<name>-<random>` beside the target, check the size, fsync, rename."""
    tmp = target.with_name(f"{PARTIAL_PREFIX}{target.name}-{secrets.token_hex(4)}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        store.download(digest, source, tmp)
        got = tmp.stat().st_size
        if got != size:
            raise BuildError(
                "PullFailed",
                f"{where}: got {got} bytes, the store lists {size}",
                "infrastructure",
            )
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        raise BuildError(
            "PullFailed", f"cannot copy {where} to {target}: {exc}", "infrastructure"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
