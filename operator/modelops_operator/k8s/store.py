"""Is there a complete engine store entry for a key? Checked the way the Triton pod will read it."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

from modelops_contract.key import key_digest
from modelops_contract.layout import MANIFEST_NAME
from modelops_contract.manifest import EngineManifest, read_manifest

from ..settings import Settings

logger = logging.getLogger(__name__)

# Published entries are immutable (written under a temporary name, renamed last): a hit can be
# cached for the life of the process; a miss never is (a build may publish it any moment).
CACHE_SIZE = 1024

JsonDict = dict[str, Any]


class EngineStore(Protocol):
    """Looks up `<store>/<digest>/engine.json`."""

    async def entry(self, key: str) -> JsonDict | None:
        """engine.json (wire form) of a complete entry, or None."""
        ...


class _HitCache:
    def __init__(self) -> None:
        self._hits: OrderedDict[str, JsonDict] = OrderedDict()

    def get(self, digest: str) -> JsonDict | None:
        hit = self._hits.get(digest)
        if hit is not None:
            self._hits.move_to_end(digest)
        return hit

    def put(self, digest: str, entry: JsonDict) -> None:
        self._hits[digest] = entry
        while len(self._hits) > CACHE_SIZE:
            self._hits.popitem(last=False)


class FileStore:
    """A store on a mounted volume (the PVC, mounted in the operator pod too)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache = _HitCache()

    async def entry(self, key: str) -> JsonDict | None:
        """engine.json of `<root>/<digest>/`, parsed and validated, or None."""
        digest = key_digest(key)
        if not digest or "/" in digest or digest.startswith("."):
            return None
        hit = self._cache.get(digest)
        if hit is not None:
            return hit
        # A network volume can block: keep the event loop free.
        manifest = await asyncio.to_thread(read_manifest, self.root / digest)
        if manifest is None:
            return None
        entry = manifest.to_wire()
        self._cache.put(digest, entry)
        return entry


class S3Store:
    """A store under an s3:// prefix; credentials come from the standard AWS environment."""

    def __init__(self, uri: str) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._cache = _HitCache()
        self._s3: Any = None

    def _object_key(self, digest: str) -> str:
        return "/".join(p for p in (self.prefix, digest, MANIFEST_NAME) if p)

    def _fetch(self, digest: str) -> JsonDict | None:
        if self._s3 is None:
            import boto3  # lazily: only s3 stores need it

            self._s3 = boto3.client("s3")
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=self._object_key(digest))
            text = obj["Body"].read().decode()
        except Exception as exc:  # botocore's errors are dynamic classes; a miss is any failure
            logger.debug(
                "no store entry s3://%s/%s: %s", self.bucket, self._object_key(digest), exc
            )
            return None
        try:
            return EngineManifest.model_validate_json(text).to_wire()
        except ValueError:
            return None

    async def entry(self, key: str) -> JsonDict | None:
        """engine.json of `<prefix>/<digest>/`, parsed and validated, or None."""
        digest = key_digest(key)
        hit = self._cache.get(digest)
        if hit is not None:
            return hit
        entry = await asyncio.to_thread(self._fetch, digest)
        if entry is not None:
            self._cache.put(digest, entry)
        return entry


def store_from_settings(settings: Settings) -> EngineStore:
    """The s3 store when MODELOPS_STORE_URI is set, else the mounted PVC."""
    if settings.store_uri:
        return S3Store(settings.store_uri)
    return FileStore(Path(settings.store_mount_path))
