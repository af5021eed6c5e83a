"""The engine store under an s3:// prefix: staged locally, uploaded with engine.json last.

S3 puts are atomic per object and a reader ignores an entry without a valid engine.json, so
engine.json is the commit marker: it is uploaded last and removed first. Credentials are the
standard AWS_* environment of the store's own Secret, never the model source's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, cast

from modelops_contract.layout import MANIFEST_NAME
from modelops_contract.manifest import EngineManifest, read_manifest

from .entry_paths import safe_entry_path
from .errors import BuildError

MULTIPART_BYTES = 64 << 20


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


def _error(action: str, where: str, exc: BaseException, reason: str) -> BuildError:
    return BuildError(reason, f"cannot {action} {where}: {exc}", "infrastructure")


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
            raise _error("read", where, exc, "StoreUnavailable") from exc
        except BotoCoreError as exc:  # endpoint unreachable, no credentials
            raise _error("read", where, exc, "StoreUnavailable") from exc

    def lookup(self, digest: str) -> tuple[EngineManifest, Path] | None:
        """engine.json of the entry, copied into a local directory."""
        data = self.read_manifest_bytes(digest)
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
            raise _error("reach the store", f"s3://{self.bucket}", exc, "StoreWriteFailed") from exc
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
            where = self.location(digest)
            raise _error("upload to", where, exc, "StoreWriteFailed") from exc
        return staging

    def discard(self, staging: Path) -> None:
        """Remove the local staged copy (nothing was uploaded before publish)."""
        shutil.rmtree(staging, ignore_errors=True)

    def remove_entry(self, digest: str) -> None:
        """Delete engine.json first (the entry is gone for every reader), then the rest."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = self._key(digest) + "/"
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(digest, MANIFEST_NAME))
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    self.client.delete_object(Bucket=self.bucket, Key=str(item["Key"]))
        except (BotoCoreError, ClientError) as exc:
            where = f"s3://{self.bucket}/{prefix}"
            raise _error("remove", where, exc, "StoreWriteFailed") from exc

    def read_blob(self, name: str) -> bytes | None:
        """A store-level object, None when absent."""
        return self._get(self._key(name))

    def write_blob(self, name: str, data: bytes) -> None:
        """Put a store-level object (S3 puts are atomic per object)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
        except (BotoCoreError, ClientError) as exc:
            where = f"s3://{self.bucket}/{self._key(name)}"
            raise _error("write", where, exc, "StoreWriteFailed") from exc

    def read_manifest_bytes(self, digest: str) -> bytes | None:
        """engine.json as stored, None when absent."""
        return self._get(self._key(digest, MANIFEST_NAME))

    def open_file(self, digest: str, name: str) -> BinaryIO:
        """GetObject's streaming body (read in chunks by the caller)."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(digest, safe_entry_path(name).as_posix())
        try:
            return cast(BinaryIO, self.client.get_object(Bucket=self.bucket, Key=key)["Body"])
        except (BotoCoreError, ClientError) as exc:
            raise _error("read", f"s3://{self.bucket}/{key}", exc, "StoreUnavailable") from exc
