"""The publishing step of a cluster build: the only code that writes to the store.

It runs after the build step, in its own container, with the store and the MAC key, and sees
nothing of the user's but the build step's output folder: the engine files, the validation set,
build.json and (TensorRT) the updated timing cache. Every one of them is copied as data, never
followed through a link nor run; anything else in the folder fails the build. Its own package
supplies model.py and config.pbtxt (seal.py). A complete entry already at the key is kept when
it checks out whole (a concurrent build of the same key) and replaced when it does not.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import urllib.error
import urllib.request
from pathlib import Path

from modelops_contract.key import key_digest
from modelops_contract.layout import REPOSITORY_DIR, VERSION_DIR
from modelops_contract.manifest import EngineManifest, summary_of
from modelops_contract.request import BuildRequest, BuildSummary
from modelops_contract.validation import VALIDATION_SET_NAME

from . import timing_cache
from .errors import BuildError
from .pipeline import TIMING_CACHE_OUTPUT
from .seal import (
    BUILD_RECORD,
    CHUNK,
    mac_key_from_env,
    read_record,
    seal_entry,
    verify_stored_entry,
)
from .store import Store, open_store

log = logging.getLogger(__name__)

# The only engine files a build may hand over (engines.py and tensorrt_engine.py write them).
ENGINE_FILE_NAMES = frozenset({"model.onnx", "model.onnx.data", "model.plan"})


def _copy_regular(source: Path, dest: Path) -> None:
    """Copy one regular file without following a link; BuildError for anything else."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise BuildError("InvalidBuildOutput", f"{source}: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise BuildError("InvalidBuildOutput", f"{source} is not a regular file")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out:
            shutil.copyfileobj(handle, out, CHUNK)


def expected_outputs(record: EngineManifest) -> set[str]:
    """The paths (relative to the output folder) a build of this record may leave."""
    version = f"{REPOSITORY_DIR}/{record.model_name}/{VERSION_DIR}"
    files = record.engine_files()
    unknown = sorted(set(files) - ENGINE_FILE_NAMES)
    if unknown:
        raise BuildError("InvalidBuildOutput", f"the build names unknown engine files {unknown}")
    return {BUILD_RECORD, VALIDATION_SET_NAME, *(f"{version}/{name}" for name in files)}


def check_output_file(relative: str, info: os.stat_result) -> None:
    """A file of the build's output is plain data: a regular file with one link, no execute,
    setuid, setgid or sticky bit (BuildError naming it otherwise)."""
    if not stat.S_ISREG(info.st_mode):
        raise BuildError("InvalidBuildOutput", f"the build left {relative!r}: not a regular file")
    if info.st_mode & 0o7111:
        raise BuildError(
            "InvalidBuildOutput",
            f"the build left {relative!r} with mode {stat.filemode(info.st_mode)}: entry files "
            "are data, never executable",
        )
    if info.st_nlink != 1:
        raise BuildError(
            "InvalidBuildOutput", f"the build left {relative!r} with {info.st_nlink} hard links"
        )


def import_output(out: Path, staging: Path, record: EngineManifest) -> None:
    """Copy the build's output into the store's staging folder, checking every path first:
    names (only what an entry holds), types (folders of the layout, regular files; no links),
    and modes (no executable)."""
    allowed = expected_outputs(record)
    folders = {REPOSITORY_DIR, f"{REPOSITORY_DIR}/{record.model_name}", record.version_folder()}
    present: set[str] = set()
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out).as_posix()
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode) and relative in folders:
            continue
        if relative == TIMING_CACHE_OUTPUT and stat.S_ISREG(info.st_mode):
            continue  # not part of the entry: publish() keeps it as a store-level blob
        if relative not in allowed:
            raise BuildError(
                "InvalidBuildOutput",
                f"the build left {relative!r}, which is not among the files an entry holds",
            )
        check_output_file(relative, info)
        present.add(relative)
    missing = sorted(allowed - present)
    if missing:
        raise BuildError("InvalidBuildOutput", f"the build left no {', '.join(missing)}")
    for relative in sorted(present):
        _copy_regular(out / relative, staging / relative)


def _keep_timing_cache(store: Store, out: Path, request: BuildRequest, mac_key: bytes) -> None:
    """The build's new timing cache, sealed, under the name the request (the operator) chose:
    nothing of the build's own choosing names it (timing_cache.py)."""
    cache = out / TIMING_CACHE_OUTPUT
    if request.timing_cache is None or not cache.exists():
        return
    try:
        check_output_file(TIMING_CACHE_OUTPUT, cache.lstat())
        timing_cache.keep(store, request.timing_cache, cache.read_bytes(), mac_key)
    except BuildError as exc:  # a lost timing cache only slows the next build
        log.warning("timing cache not saved: %s", exc)


def _drop_staged_source(request: BuildRequest) -> None:
    """Tell the engine server the staged source (and data sets) are no longer needed (its TTL
    is the backstop)."""
    calibration = request.calibration.data if request.calibration else None
    sets = [request.staged_source]
    sets += [d.staged_source for d in (calibration, request.labelled_set) if d is not None]
    for staged in sets:
        if staged is None:
            continue
        call = urllib.request.Request(  # noqa: S310 - the engine server's in-cluster URL
            staged.url, method="DELETE", headers={"Authorization": f"Bearer {staged.token}"}
        )
        try:
            with urllib.request.urlopen(call, timeout=10):  # noqa: S310
                pass
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            log.warning("staged file not removed (the engine server's TTL will): %s", exc)


def publish_output(request: BuildRequest, out: Path) -> BuildSummary:
    """Seal and publish the build step's output for `request.engine_key`; the Job's summary."""
    mac_key = mac_key_from_env()
    if mac_key is None:
        raise BuildError(
            "InvalidStoreKey",
            "MODELOPS_STORE_MAC_KEY is not set: entries cannot be sealed",
            "infrastructure",
        )
    key = request.engine_key
    if key is None:
        raise BuildError("InvalidRequest", "publish needs the request's engineKey")
    store = open_store(request.store)
    digest = key_digest(key)
    uri = f"{(request.store_name or store.uri).rstrip('/')}/{digest}"
    record = read_record(out)
    try:
        existing = verify_stored_entry(store, digest, mac_key)
    except BuildError as exc:
        if exc.reason != "EngineTampered" and exc.reason != "EngineUnverifiable":
            raise
        log.warning("replacing the entry at %s: %s", store.location(digest), exc.message)
        store.remove_entry(digest)
        existing = None
    if existing is not None:
        log.info("a complete entry for %s checks out: kept", key)
        _keep_timing_cache(store, out, request, mac_key)  # the build ran: its timings help
        _drop_staged_source(request)
        return summary_of(existing, uri, cached=True)
    staging = store.stage(digest)
    published = False
    try:
        import_output(out, staging, record)
        raw = seal_entry(staging, key=key, model_name=request.model_name, mac_key=mac_key)
        store.publish(digest, staging)
        published = True
    finally:
        if not published:
            store.discard(staging)
    _keep_timing_cache(store, out, request, mac_key)
    _drop_staged_source(request)
    return summary_of(EngineManifest.model_validate_json(raw), uri, cached=False)
