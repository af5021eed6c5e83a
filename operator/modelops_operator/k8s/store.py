"""Is there a complete, *verified* engine store entry for a key? The operator reads engine.json
the way the Triton pod will, and accepts it only with the store's MAC (docs/security.md).

An entry is refused when engine.json carries no MAC or a wrong one (written or changed by
anyone but a publishing step), and when a pod found one of its files changed (`condemn`, fed by
the pods' pull failures): decide then rebuilds it. A verified entry comes with the sha256 of
engine.json's bytes, which the operator pins into the revision's pods.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from modelops_contract import integrity
from modelops_contract.key import key_digest
from modelops_contract.layout import MANIFEST_NAME
from modelops_contract.manifest import EngineManifest

from ..settings import Settings

logger = logging.getLogger(__name__)

# Published entries are immutable (written under a temporary name, renamed last), so a verified
# hit is cached; for HIT_TTL_S only, so that one changed behind the publisher's back is refused
# within that time even when no pod reports it. A miss or a refusal is never cached.
CACHE_SIZE = 1024
HIT_TTL_S = 300.0
# A pod's report of a changed file makes the operator hash the entry at most this often.
CHECK_INTERVAL_S = 600.0
CHUNK = 1 << 20

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class StoreRead:
    """What the store holds at a key: the verified manifest (wire form), the sha256 of
    engine.json's bytes, or why an entry that is there is refused."""

    entry: JsonDict | None = None
    digest: str | None = None
    refusal: str | None = None


class RawStore(Protocol):
    """Reads an entry's bytes (blocking: called in a thread)."""

    def read(self, digest: str) -> bytes | None:
        """engine.json as stored; None when there is none."""
        ...

    def open(self, digest: str, path: str) -> BinaryIO:
        """One file of the entry; OSError when it cannot be read."""
        ...


def _valid_digest(digest: str) -> bool:
    return bool(digest) and "/" not in digest and not digest.startswith(".")


class EngineStore:
    """Verified reads of the store, a cache of verified hits, and entries pods found changed."""

    def __init__(self, raw: RawStore, mac_key: bytes | None) -> None:
        self._raw = raw
        self._key = mac_key
        self._hits: OrderedDict[str, tuple[float, StoreRead]] = OrderedDict()
        self._condemned: dict[tuple[str, str], str] = {}
        self._checked: dict[str, float] = {}

    def condemn(self, key: str, manifest_sha256: str, why: str) -> None:
        """A file of this entry (this engine.json) does not match: refuse it from now on."""
        digest = key_digest(key)
        if (digest, manifest_sha256) not in self._condemned:
            logger.warning("store entry %s refused: %s", digest[:12], why)
        self._condemned[(digest, manifest_sha256)] = why
        self._hits.pop(digest, None)

    async def check_files(self, key: str, reported: str) -> bool:
        """A pod reported a changed file: hash every file of the entry here (the operator's own
        read of the store, never the pod's word) and condemn it if one differs. At most once
        per entry every CHECK_INTERVAL_S; True when the entry is refused now."""
        digest = key_digest(key)
        now = time.monotonic()
        if now - self._checked.get(digest, -CHECK_INTERVAL_S) < CHECK_INTERVAL_S:
            return False
        self._checked[digest] = now
        self._hits.pop(digest, None)  # engine.json itself is read again, not remembered
        found = await self.read(key)
        if found.entry is None or found.digest is None:
            return found.refusal is not None  # engine.json itself no longer checks out
        manifest = EngineManifest.model_validate(found.entry)
        problem = await asyncio.to_thread(self._first_mismatch, digest, manifest)
        if problem is None:
            logger.info("entry %s checks out whole (a pod reported: %s)", digest[:12], reported)
            return False
        self.condemn(key, found.digest, problem)
        return True

    def _first_mismatch(self, digest: str, manifest: EngineManifest) -> str | None:
        for listed in manifest.files:
            sha, size = hashlib.sha256(), 0
            try:
                with self._raw.open(digest, listed.path) as handle:
                    for chunk in iter(lambda: handle.read(CHUNK), b""):
                        sha.update(chunk)
                        size += len(chunk)
            except OSError as exc:
                return f"{listed.path} cannot be read: {exc}"
            if (sha.hexdigest(), size) != (listed.sha256, listed.size):
                return f"{listed.path} is not the file engine.json lists (sha256, size)"
        return None

    async def read(self, key: str) -> StoreRead:
        """The entry at `key`, verified; a StoreRead with a refusal when it does not check out."""
        digest = key_digest(key)
        if not _valid_digest(digest):
            return StoreRead()
        hit = self._hits.get(digest)
        if hit is not None and time.monotonic() - hit[0] < HIT_TTL_S:
            self._hits.move_to_end(digest)
            return hit[1]
        # A network volume or an object store can block: keep the event loop free.
        raw = await asyncio.to_thread(self._raw.read, digest)
        if raw is None:
            return StoreRead()
        found = self._verify(key, digest, raw)
        if found.entry is not None:
            self._hits[digest] = (time.monotonic(), found)
            while len(self._hits) > CACHE_SIZE:
                self._hits.popitem(last=False)
        return found

    def _verify(self, key: str, digest: str, raw: bytes) -> StoreRead:
        sha = integrity.sha256_hex(raw)
        condemned = self._condemned.get((digest, sha))
        if condemned is not None:
            return StoreRead(digest=sha, refusal=condemned)
        if self._key is None:
            return StoreRead(digest=sha, refusal="the operator has no store key to check it with")
        try:
            integrity.verify_manifest(raw, self._key)
            manifest = EngineManifest.model_validate_json(raw)
        except (integrity.IntegrityError, ValueError) as exc:
            return StoreRead(digest=sha, refusal=str(exc).splitlines()[0][:300])
        if manifest.key != key or not manifest.files:
            return StoreRead(digest=sha, refusal="engine.json names another key or no files")
        return StoreRead(entry=manifest.to_wire(), digest=sha)

    async def entry(self, key: str) -> JsonDict | None:
        """engine.json (wire form) of a verified entry, or None."""
        return (await self.read(key)).entry

    def stage_seconds(self, key: str) -> dict[str, float]:
        """The build stages' seconds of a verified entry already read (no I/O: for /metrics)."""
        hit = self._hits.get(key_digest(key))
        entry = hit[1].entry if hit is not None else None
        stages = (entry or {}).get("stageSeconds") or {}
        return {str(k): float(v) for k, v in stages.items() if isinstance(v, int | float)}


class FileStore:
    """A store on a mounted volume (the PVC, mounted read-only in the operator pod)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, digest: str) -> bytes | None:
        """`<root>/<digest>/engine.json`, None when absent or unreadable."""
        try:
            return (self.root / digest / MANIFEST_NAME).read_bytes()
        except OSError:
            return None

    def open(self, digest: str, path: str) -> BinaryIO:
        """A file of the entry, never through a link."""
        fd = os.open(self.root / digest / path, os.O_RDONLY | os.O_NOFOLLOW)
        return os.fdopen(fd, "rb")


class S3Store:
    """A store under an s3:// prefix; credentials come from the standard AWS environment."""

    def __init__(self, uri: str) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._s3: Any = None

    def _object_key(self, digest: str) -> str:
        return "/".join(p for p in (self.prefix, digest, MANIFEST_NAME) if p)

    def _client(self) -> Any:
        if self._s3 is None:
            import boto3  # lazily: only s3 stores need it

            self._s3 = boto3.client("s3")
        return self._s3

    def read(self, digest: str) -> bytes | None:
        """engine.json of `<prefix>/<digest>/`, None on any failure (a miss)."""
        try:
            obj = self._client().get_object(Bucket=self.bucket, Key=self._object_key(digest))
            return bytes(obj["Body"].read())
        except Exception as exc:  # botocore's errors are dynamic classes; a miss is any failure
            logger.debug(
                "no store entry s3://%s/%s: %s", self.bucket, self._object_key(digest), exc
            )
            return None

    def open(self, digest: str, path: str) -> BinaryIO:
        """GetObject's streaming body; OSError when it cannot be read."""
        key = "/".join(p for p in (self.prefix, digest, path) if p)
        try:
            return cast(BinaryIO, self._client().get_object(Bucket=self.bucket, Key=key)["Body"])
        except Exception as exc:  # botocore's errors are dynamic classes
            raise OSError(f"s3://{self.bucket}/{key}: {exc}") from exc


def store_from_settings(settings: Settings) -> EngineStore:
    """The s3 store when MODELOPS_STORE_URI is set, else the mounted PVC; checked with the MAC
    key of the settings."""
    raw: RawStore
    if settings.store_uri:
        raw = S3Store(settings.store_uri)
    else:
        raw = FileStore(Path(settings.store_mount_path))
    return EngineStore(raw, settings.mac_key)
