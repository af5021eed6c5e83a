"""Integrity of the engine store: per-file digests, the manifest's MAC, and transfer tokens.

Trust model (docs/security.md): only the publishing step and the operator hold the store's MAC
key; the engine server and the operator hold the transfer key. Everything here is pure (stdlib
`hmac`/`hashlib`), so both sides and the pure decision layer compute the same values.

- engine.json lists every file of its entry with its sha256 and size, and carries `mac`, an
  HMAC-SHA256 over the canonical JSON of everything else: whoever cannot write with the MAC key
  cannot make an entry the operator accepts.
- A transfer token is an HMAC-SHA256, with the transfer key, over one *scope* string: the engine
  server answers a request only with the token of its scope, and a receipt proves that the
  server received a source's bytes with the right sha256 for one ModelDeployment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

MAC_FIELD = "mac"
# The environment names the keys reach each side under, and their keys in the chart's Secret.
MAC_KEY_ENV = "MODELOPS_STORE_MAC_KEY"
TRANSFER_KEY_ENV = "MODELOPS_TRANSFER_KEY"
SECRET_MAC_KEY = "mac"  # noqa: S105 - a key name in the Secret, not a secret
SECRET_TRANSFER_KEY = "transfer"  # noqa: S105 - a key name, not a secret
# Keys are random strings from a Secret; shorter ones are refused (a guessable MAC is none).
MIN_KEY_CHARS = 32


class IntegrityError(ValueError):
    """A key that cannot be used, or a manifest that is not what it claims."""


def key_bytes(text: str) -> bytes:
    """A key from its Secret value (surrounding whitespace ignored); refused when too short."""
    stripped = text.strip()
    if len(stripped) < MIN_KEY_CHARS:
        raise IntegrityError(f"a store key needs at least {MIN_KEY_CHARS} characters")
    return stripped.encode()


def canonical_bytes(data: Mapping[str, Any]) -> bytes:
    """The bytes a manifest's MAC covers: sorted, compact JSON of every field but `mac`."""
    unsigned = {k: v for k, v in data.items() if k != MAC_FIELD}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_mac(key: bytes, data: Mapping[str, Any]) -> str:
    """HMAC-SHA256 (hex) of a manifest's canonical bytes."""
    return hmac.new(key, canonical_bytes(data), hashlib.sha256).hexdigest()


def signed_manifest_bytes(data: Mapping[str, Any], key: bytes | None) -> bytes:
    """engine.json as published: the canonical JSON with `mac` added when a key is given."""
    unsigned = {k: v for k, v in data.items() if k != MAC_FIELD}
    if key is not None:
        unsigned[MAC_FIELD] = manifest_mac(key, unsigned)
    return json.dumps(unsigned, sort_keys=True, indent=2, ensure_ascii=True).encode() + b"\n"


def verify_manifest(raw: bytes, key: bytes) -> dict[str, Any]:
    """The parsed engine.json when its MAC is right; IntegrityError naming what is wrong."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise IntegrityError(f"engine.json is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise IntegrityError("engine.json is not a JSON object")
    mac = data.get(MAC_FIELD)
    if not isinstance(mac, str) or not mac:
        raise IntegrityError("engine.json carries no MAC: it was not published by this store")
    if not hmac.compare_digest(mac, manifest_mac(key, data)):
        raise IntegrityError("engine.json's MAC does not match: it was changed after publishing")
    return data


def sha256_hex(data: bytes) -> str:
    """The sha256 of some bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def timing_cache_mac(key: bytes, name: str, data: bytes) -> str:
    """The seal of a TensorRT timing cache: HMAC-SHA256 (MAC key) of its store-level name and
    the sha256 of its bytes (a cache moved to another tenant's name does not verify)."""
    return hmac.new(
        key, f"timing-cache:{name}:{sha256_hex(data)}".encode(), hashlib.sha256
    ).hexdigest()


# --- transfer tokens ----------------------------------------------------------------------------
def token(key: bytes, scope: str) -> str:
    """The token of one scope: HMAC-SHA256 (hex) with the transfer key."""
    return hmac.new(key, scope.encode(), hashlib.sha256).hexdigest()


def token_valid(key: bytes, scope: str, given: str | None) -> bool:
    """Whether `given` is the token of `scope` (constant time)."""
    return bool(given) and hmac.compare_digest(token(key, scope), str(given))


def entry_scope(digest: str) -> str:
    """Reading the files of store entry `digest` (Triton pods, validation Jobs)."""
    return f"entry:{digest}"


def source_put_scope(
    sha256: str, owner: str, namespace: str, *, keep: bool, max_bytes: int, expires: int
) -> str:
    """Sending source `sha256` for ModelDeployment `owner` (its uid) of `namespace`: kept or
    not, at most `max_bytes`, until `expires` (Unix seconds). Every term is the operator's
    choice: a client that changes one holds no token for it."""
    return f"source-put:{sha256}:{owner}:{namespace}:{int(keep)}:{max_bytes}:{expires}"


def source_get_scope(sha256: str, owner: str) -> str:
    """Reading (and removing) the source `sha256` staged for ModelDeployment `owner`: its build
    Job only."""
    return f"source-get:{sha256}:{owner}"


def route_scope(namespace: str, name: str) -> str:
    """Reading the route table of ModelDeployment `namespace/name` (its router's agent)."""
    return f"route:{namespace}/{name}"


def triton_admin_scope(namespace: str, name: str) -> str:
    """Calling the admin APIs of ModelDeployment `namespace/name`'s Triton pods."""
    return f"triton-admin:{namespace}/{name}"


def receipt_scope(sha256: str, owner: str, *, kept: bool) -> str:
    """What a receipt certifies: the server got `sha256`'s bytes for `owner` (and kept them)."""
    return f"receipt:{'kept' if kept else 'seen'}:{sha256}:{owner}"
