"""The engine store: complete entries only, published atomically.

A directory store (a path or file:// URI) stages an entry under `<store>/.tmp-<digest>-<random>/`
(same filesystem) and publishes it with one `os.rename`: readers see no entry or a complete one.
An s3:// store stages locally, uploads every file, and uploads `engine.json` last: an entry
without engine.json is incomplete and ignored (read_manifest fails), so engine.json is the commit
marker. Store-level files (TensorRT timing caches) live under `<store>/_timing_cache/`.
`list_files` and `download` read an entry's files back (`modelops-build pull`, pull.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from modelops_contract.layout import MANIFEST_NAME
from modelops_contract.manifest import EngineManifest, read_manifest

from .errors import BuildError

log = logging.getLogger(__name__)

STAGING_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# Staging directories older than this belong to builds that died: removed on the next build.
STALE_STAGING_S = 24 * 3600
MULTIPART_BYTES = 64 << 20
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

    def read_blob(self, name: str) -> bytes | None:
        """A store-level file (e.g. a timing cache), None when absent."""
        ...

    def write_blob(self, name: str, data: bytes) -> None:
        """Replace a store-level file atomically."""
        ...

    def list_files(self, digest: str, folder: str) -> dict[str, int]:
        """Files under `<digest>/<folder>/`: posix path relative to it -> size in bytes."""
        ...

    def download(self, digest: str, name: str, dest: Path) -> None:
        """Copy the entry file `<digest>/<name>` to the local file `dest` (overwritten)."""
        ...


def store_s3_client() -> Any:
    """The store's S3 client: the standard AWS_* environment of the store's own Secret.

    Never used for the model source (fetch_remote.source_s3_client has its own credentials).
    """
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    # S3-compatible stores (MinIO, Ceph) behind a custom endpoint mostly need path-style URLs.
    style = "path" if endpoint else "auto"
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": style})
    # A fresh session reads the environment now; boto3's default session caches the first
    # credentials it ever resolved in this process.
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


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
            # Another build of the same key published first: identical by construction.
            log.info("entry %s appeared concurrently; keeping it", digest)
            self.discard(staging)
            return final
        if final.exists():
            # A leftover without engine.json (copied by hand, crashed tool): move it aside.
            trash = self.root / f"{TRASH_PREFIX}{digest}-{secrets.token_hex(4)}"
            try:
                os.rename(final, trash)
                os.rename(staging, final)
                shutil.rmtree(trash, ignore_errors=True)
                return final
            except OSError as again:
                error = again
        self.discard(staging)
        raise _store_error("publish into", final, error) from error

    def discard(self, staging: Path) -> None:
        """Remove a staging directory."""
        shutil.rmtree(staging, ignore_errors=True)

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

    def list_files(self, digest: str, folder: str) -> dict[str, int]:
        """Regular files under `<store>/<digest>/<folder>/` and their sizes."""
        base = self.root / digest / folder
        try:
            if not base.is_dir():
                return {}
            return {
                p.relative_to(base).as_posix(): p.stat().st_size
                for p in sorted(base.rglob("*"))
                if p.is_file()
            }
        except OSError as exc:
            raise _store_error("list", base, exc, "StoreUnavailable") from exc

    def download(self, digest: str, name: str, dest: Path) -> None:
        """shutil.copyfile; an OSError (either side) propagates."""
        shutil.copyfile(self.root / digest / name, dest)


def _fsync_tree(root: Path) -> None:
    """Flush the staged files, so a crash after the rename cannot leave empty files behind."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


class S3Store:
    """An s3:// prefix: staged locally, uploaded with engine.json last (the commit marker)."""

    def __init__(self, bucket: str, prefix: str, uri: str) -> None:
        self.bucket, self.prefix, self.uri = bucket, prefix.strip("/"), uri
        self.client: Any = store_s3_client()

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"s3://{self.bucket}/{key}"
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise _store_error("read", where, exc, "StoreUnavailable") from exc
        except BotoCoreError as exc:  # endpoint unreachable, no credentials
            raise _store_error("read", where, exc, "StoreUnavailable") from exc

    def lookup(self, digest: str) -> tuple[EngineManifest, Path] | None:
        """engine.json of the entry, copied into a local directory."""
        data = self._get(self._key(digest, MANIFEST_NAME))
        if data is None:
            return None
        local = Path(tempfile.mkdtemp(prefix=f"modelops-{digest[:12]}-"))
        (local / MANIFEST_NAME).write_bytes(data)
        manifest = read_manifest(local)
        return (manifest, local) if manifest is not None else None

    def location(self, digest: str) -> str:
        """s3://bucket/prefix/<digest>."""
        return f"s3://{self.bucket}/{self._key(digest)}"

    def stage(self, digest: str) -> Path:
        """A local temp dir, after checking the bucket is reachable."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise _store_error("reach the store", f"s3://{self.bucket}", exc) from exc
        return Path(tempfile.mkdtemp(prefix=f"modelops-{digest[:12]}-"))

    def publish(self, digest: str, staging: Path) -> Path:
        """Upload every file, engine.json last; the local staged copy stays as the entry dir."""
        from botocore.exceptions import BotoCoreError, ClientError

        files = sorted(p for p in staging.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.relative_to(staging).as_posix() == MANIFEST_NAME)
        try:
            for path in files:
                key = self._key(digest, path.relative_to(staging).as_posix())
                if path.stat().st_size < MULTIPART_BYTES:
                    with path.open("rb") as body:
                        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
                else:
                    # Large plans go multipart (s3transfer), small files in one cheap PUT.
                    self.client.upload_file(str(path), self.bucket, key)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise _store_error("upload to", self.location(digest), exc) from exc
        return staging

    def discard(self, staging: Path) -> None:
        """Remove the local staged copy (nothing was uploaded before publish)."""
        shutil.rmtree(staging, ignore_errors=True)

    def read_blob(self, name: str) -> bytes | None:
        """A store-level object, None when absent."""
        return self._get(self._key(name))

    def write_blob(self, name: str, data: bytes) -> None:
        """Put a store-level object (S3 puts are atomic per object)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise _store_error("write", f"s3://{self.bucket}/{self._key(name)}", exc) from exc

    def list_files(self, digest: str, folder: str) -> dict[str, int]:
        """ListObjectsV2 under `<prefix>/<digest>/<folder>/` (paginated), folder markers skipped."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self._key(digest, folder) + "/"
        files: dict[str, int] = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = str(item["Key"])[len(prefix) :]
                    if name and not name.endswith("/"):
                        files[name] = int(item["Size"])
        except (BotoCoreError, ClientError) as exc:
            where = f"s3://{self.bucket}/{prefix}"
            raise _store_error("list", where, exc, "StoreUnavailable") from exc
        return files

    def download(self, digest: str, name: str, dest: Path) -> None:
        """GetObject streamed into `dest` in 1 MiB chunks; an OSError on `dest` propagates."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(digest, name)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with dest.open("wb") as out:
                for chunk in body.iter_chunks(DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
        except (BotoCoreError, ClientError) as exc:
            raise _store_error(
                "read", f"s3://{self.bucket}/{key}", exc, "StoreUnavailable"
            ) from exc


def open_store(uri: str) -> Store:
    """A Store for a directory, file:// or s3:// URI."""
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise BuildError("InvalidStore", f"{uri}: want s3://BUCKET[/PREFIX]")
        return S3Store(parts.netloc, parts.path, uri)
    if parts.scheme == "file":
        return LocalStore(Path(unquote(parts.path)), uri)
    if parts.scheme == "":
        return LocalStore(Path(uri).absolute(), uri)
    raise BuildError("InvalidStore", f"{uri}: the store must be a directory, file:// or s3://")
