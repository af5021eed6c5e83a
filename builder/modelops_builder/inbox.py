"""The engine server's inbox: staged sources per (sha256, owner), and what each tenant may hold.

A staged source is the file `<namespace>/<sha256>-<owner uid>`: one per ModelDeployment, so a
token for another build of the same sha256 can neither read nor delete it. Before a byte of an
upload is written, its bytes (the smaller of the token's limit and Content-Length) are reserved
against the tenant's (namespace's) quota and the server's, and the upload takes one of the
tenant's and one of the server's upload slots; a refusal costs the server nothing. Kept files
count until the build deletes them or the TTL sweeps them; a restarted server counts what its
(persistent) inbox holds.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PARTIAL = ".partial-"


@dataclass(frozen=True)
class Quotas:
    """What the inbox accepts: bytes and concurrent uploads, per namespace and in all."""

    total_bytes: int = 40 * 1024**3
    namespace_bytes: int = 20 * 1024**3
    total_uploads: int = 16
    namespace_uploads: int = 4


class QuotaExceeded(Exception):
    """An upload the inbox refuses before reading it; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class Lease:
    """The bytes one upload may write: reserved ahead, in steps, each step checked first."""

    STEP = 64 * 1024**2

    def __init__(self, inbox: Inbox, namespace: str, reserved: int) -> None:
        self.inbox, self.namespace, self.reserved = inbox, namespace, reserved

    def cover(self, size: int) -> None:
        """Make sure `size` bytes are reserved (QuotaExceeded when they would not fit)."""
        if size <= self.reserved:
            return
        quotas = self.inbox.quotas
        step = min(self.STEP, quotas.namespace_bytes // max(1, quotas.namespace_uploads))
        more = max(size - self.reserved, step)
        if self.inbox.held(self.namespace) + more > quotas.namespace_bytes:
            more = size - self.reserved  # near the quota: exactly what is needed
        self.inbox._check_bytes(self.namespace, more)
        self.inbox._reserved[self.namespace] += more
        self.reserved += more


class Inbox:
    """Staged sources on disk, the bytes each namespace holds, and the uploads in flight."""

    def __init__(self, root: Path, quotas: Quotas) -> None:
        self.root = root
        self.quotas = quotas
        root.mkdir(parents=True, exist_ok=True)
        self._reserved: Counter[str] = Counter()
        self._uploads: Counter[str] = Counter()
        self._stored: Counter[str] = Counter()
        self._drop_partials()  # no upload survives a restart: what they left is garbage
        self._recount()

    # --- names ----------------------------------------------------------------------------------
    def path(self, namespace: str, sha: str, owner: str) -> Path:
        """Where the staged source of (sha256, owner) lives."""
        return self.root / namespace / f"{sha}-{owner}"

    def find(self, sha: str, owner: str) -> Path | None:
        """The staged source of (sha256, owner), in whichever namespace it was sent from."""
        for folder in self._folders():
            candidate = folder / f"{sha}-{owner}"
            if candidate.is_file():
                return candidate
        return None

    def _folders(self) -> Iterator[Path]:
        with contextlib.suppress(OSError):
            for folder in self.root.iterdir():
                if folder.is_dir() and not folder.is_symlink():
                    yield folder

    def partial(self, namespace: str, sha: str, owner: str, tag: str) -> Path:
        """Where an upload writes until its sha256 is checked."""
        folder = self.root / namespace
        folder.mkdir(exist_ok=True)
        return folder / f"{PARTIAL}{sha}-{owner}-{tag}"

    def _drop_partials(self) -> None:
        for folder in self._folders():
            for path in folder.glob(f"{PARTIAL}*"):
                path.unlink(missing_ok=True)

    # --- accounting -----------------------------------------------------------------------------
    def _recount(self) -> None:
        """Bytes each namespace holds in staged sources (at start, and after each sweep); the
        uploads in flight count by their reservations."""
        stored: Counter[str] = Counter()
        for folder in self._folders():
            for path in folder.iterdir():
                with contextlib.suppress(OSError):
                    if path.is_file() and not path.name.startswith(PARTIAL):
                        stored[folder.name] += path.stat().st_size
        self._stored = stored

    def held(self, namespace: str | None = None) -> int:
        """Bytes stored and reserved, by one namespace or in all."""
        if namespace is None:
            return sum(self._stored.values()) + sum(self._reserved.values())
        return self._stored[namespace] + self._reserved[namespace]

    def _check_bytes(self, namespace: str, more: int) -> None:
        quotas = self.quotas
        if self.held(namespace) + more > quotas.namespace_bytes:
            raise QuotaExceeded(
                507,
                "InboxQuotaExceeded",
                f"{namespace} would hold over {quotas.namespace_bytes} bytes of staged sources",
            )
        if self.held() + more > quotas.total_bytes:
            raise QuotaExceeded(507, "InboxFull", "the engine server's inbox is full")

    @contextlib.contextmanager
    def upload(self, namespace: str, reserve: int) -> Iterator[Lease]:
        """Hold an upload slot of `namespace` and `reserve` bytes (a declared length) for the
        upload's lifetime; QuotaExceeded before anything is taken when either is over its
        quota. The lease grows the reservation as bytes arrive, checked before they are
        written."""
        quotas = self.quotas
        if self._uploads[namespace] >= quotas.namespace_uploads:
            raise QuotaExceeded(
                429, "TooManyUploads", f"{namespace} has {quotas.namespace_uploads} uploads open"
            )
        if sum(self._uploads.values()) >= quotas.total_uploads:
            raise QuotaExceeded(429, "TooManyUploads", "the engine server's uploads are all busy")
        self._check_bytes(namespace, reserve)
        lease = Lease(self, namespace, reserve)
        self._uploads[namespace] += 1
        self._reserved[namespace] += reserve
        try:
            yield lease
        finally:
            self._uploads[namespace] -= 1
            self._reserved[namespace] -= lease.reserved

    def kept(self, namespace: str, size: int) -> None:
        """An upload became a staged source of `size` bytes."""
        self._stored[namespace] += size

    def remove(self, path: Path) -> bool:
        """Drop a staged source; True when there was one."""
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return False
        self._stored[path.parent.name] = max(0, self._stored[path.parent.name] - size)
        return True

    def sweep(self, ttl_seconds: float) -> None:
        """Remove staged sources older than the TTL."""
        limit = time.time() - ttl_seconds
        for folder in self._folders():
            for path in folder.iterdir():
                with contextlib.suppress(OSError):
                    old = path.stat().st_mtime < limit
                    if path.is_file() and old and not path.name.startswith(PARTIAL):
                        path.unlink()
        self._recount()
