"""Sealing a store entry, and checking one: per-file sha256 in engine.json, and its MAC.

The build writes its engine, the validation set and `build.json` (the manifest without digests)
into a folder. Sealing adds what the publishing side owns, never taken from the build: the CPU
Triton's `model.py` (from this package), `config.pbtxt`, the sha256 and size of every file, and
the MAC over all of it (modelops_contract.integrity). Checking an entry is the same in reverse:
the MAC (or a digest pinned by the operator) vouches for engine.json, engine.json for each file.
Light module: no torch, onnx or tensorrt.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from modelops_contract import integrity
from modelops_contract.layout import MANIFEST_NAME, REPOSITORY_DIR
from modelops_contract.manifest import EngineManifest, EntryFile
from modelops_contract.tritonconfig import ServingOptions, render_model_config

from .errors import BuildError
from .store import Store

BUILD_RECORD = "build.json"
MAC_KEY_ENV = integrity.MAC_KEY_ENV
PYTHON_BACKEND_FILE = "model.py"
CHUNK = 1 << 20


def mac_key_from_env(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The store's MAC key from MODELOPS_STORE_MAC_KEY; None when unset."""
    env = os.environ if environ is None else environ
    text = env.get(MAC_KEY_ENV, "")
    if not text.strip():
        return None
    try:
        return integrity.key_bytes(text)
    except integrity.IntegrityError as exc:
        raise BuildError("InvalidStoreKey", f"{MAC_KEY_ENV}: {exc}", "infrastructure") from exc


# build.json is a small JSON record; the publisher reads no more of it than this.
MAX_RECORD_BYTES = 1024 * 1024


def read_record(folder: Path) -> EngineManifest:
    """The build's record (build.json) as a manifest; BuildError when it is not one."""
    path = folder / BUILD_RECORD
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ValueError("not a regular file")
            raw = handle.read(MAX_RECORD_BYTES + 1)
            if len(raw) > MAX_RECORD_BYTES:
                raise ValueError(f"over {MAX_RECORD_BYTES} bytes")
            return EngineManifest.model_validate_json(raw)
    except (OSError, ValueError) as exc:
        raise BuildError("InvalidBuildOutput", f"{path}: no valid build record: {exc}") from exc


def hash_stream(handle: BinaryIO) -> tuple[str, int]:
    """(sha256 hex, size) of a stream read to its end."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _regular_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            raise BuildError("InvalidBuildOutput", f"{path} is not a regular file")
        yield path


def _python_backend(version_dir: Path) -> None:
    """model.py beside model.onnx, from this package: the same entry serves in the CPU Triton."""
    from .triton_cpu import MODEL_PY

    (version_dir / PYTHON_BACKEND_FILE).write_bytes(MODEL_PY.read_bytes())


def seal_entry(staging: Path, *, key: str, model_name: str, mac_key: bytes | None) -> bytes:
    """Turn a staged build into a complete entry; returns engine.json's bytes as written.

    The key and model name are the publisher's (the request's), never the build's word.
    """
    record = read_record(staging)
    if record.key != key or record.model_name != model_name:
        raise BuildError(
            "InvalidBuildOutput",
            f"the build recorded key {record.key} / model {record.model_name!r}; "
            f"the request says {key} / {model_name!r}",
        )
    version_dir = staging / record.version_folder()
    if record.engine == "onnxruntime":
        _python_backend(version_dir)
    options = ServingOptions(gpu=record.engine == "tensorrt", backend=record.serving_backend)
    config = render_model_config(record, model_name, options)
    (staging / REPOSITORY_DIR / model_name / "config.pbtxt").write_text(config)
    (staging / BUILD_RECORD).unlink()
    files = []
    for path in _regular_files(staging):
        relative = path.relative_to(staging).as_posix()
        if relative == MANIFEST_NAME:
            continue
        with path.open("rb") as handle:
            sha, size = hash_stream(handle)
        files.append(EntryFile(path=relative, sha256=sha, size=size))
    manifest = record.model_copy(update={"files": files, "mac": None})
    raw = integrity.signed_manifest_bytes(manifest.to_wire(), mac_key)
    (staging / MANIFEST_NAME).write_bytes(raw)
    return raw


def trusted_manifest(
    raw: bytes, *, where: str, mac_key: bytes | None = None, pinned: str | None = None
) -> EngineManifest:
    """engine.json vouched for by a pinned sha256 or by its MAC; BuildError otherwise."""
    if pinned is not None:
        actual = integrity.sha256_hex(raw)
        if actual != pinned:
            raise BuildError(
                "EngineTampered",
                f"{where}/engine.json has sha256 {actual[:12]}..., the operator verified "
                f"{pinned[:12]}...: the entry changed after it was checked",
                "infrastructure",
            )
    elif mac_key is not None:
        try:
            integrity.verify_manifest(raw, mac_key)
        except integrity.IntegrityError as exc:
            raise BuildError("EngineTampered", f"{where}: {exc}", "infrastructure") from exc
    else:
        raise BuildError(
            "UnverifiedEntry",
            f"{where}: nothing to check engine.json against: give the digest the operator "
            f"pinned (--manifest-sha256) or the store's key ({MAC_KEY_ENV})",
        )
    try:
        manifest = EngineManifest.model_validate_json(raw)
    except ValueError as exc:
        message = f"{where}: engine.json: {exc}"
        raise BuildError("EngineTampered", message, "infrastructure") from exc
    if not manifest.files:
        raise BuildError(
            "EngineUnverifiable",
            f"{where}: engine.json lists no file digests (built before builder 0.3): rebuild it",
            "infrastructure",
        )
    return manifest


def check_listed_file(entry: EntryFile, sha: str, size: int, where: str) -> None:
    """BuildError EngineTampered when a file's bytes are not the ones engine.json lists."""
    if (sha, size) != (entry.sha256, entry.size):
        raise BuildError(
            "EngineTampered",
            f"{where}/{entry.path}: sha256 {sha[:12]}... ({size} bytes) is not engine.json's "
            f"{entry.sha256[:12]}... ({entry.size} bytes)",
            "infrastructure",
        )


def verify_stored_entry(store: Store, digest: str, mac_key: bytes) -> EngineManifest | None:
    """A published entry checked whole (MAC, then every file's sha256); None when absent.

    BuildError EngineTampered (or StoreUnavailable) when it is there but not right.
    """
    raw = store.read_manifest_bytes(digest)
    if raw is None:
        return None
    where = store.location(digest)
    manifest = trusted_manifest(raw, where=where, mac_key=mac_key)
    for listed in manifest.files:
        with store.open_file(digest, listed.path) as handle:
            sha, size = hash_stream(handle)
        check_listed_file(listed, sha, size, where)
    return manifest
