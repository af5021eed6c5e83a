"""PURE: the transfer tokens the operator mints for the engine server (integrity.py).

Each token opens one door of the engine server for one thing: an entry's files (Triton pods and
validation Jobs of a ModelDeployment that proved it can read the source), sending one source for
one ModelDeployment (its source Job), reading a staged source (the build Job), reading one route
table (its router's agent), calling the admin APIs of one ModelDeployment's Triton pods.
Without the transfer key (a renderer called without settings) the token is empty and opens
nothing.
"""

from __future__ import annotations

from modelops_contract import integrity
from modelops_contract.key import key_digest
from modelops_contract.staging import StageRequest

from ..settings import Settings


def _token(settings: Settings, scope: str) -> str:
    key = settings.transfer_key_bytes
    return integrity.token(key, scope) if key is not None else ""


def entry_token(settings: Settings, engine_key: str) -> str:
    """Reads the files of the entry of `engine_key`."""
    return _token(settings, integrity.entry_scope(key_digest(engine_key)))


def source_put_token(settings: Settings, request: StageRequest) -> str:
    """Sends source `request.sha256` for one ModelDeployment, within the request's terms
    (keep, size limit, namespace, expiry)."""
    scope = integrity.source_put_scope(
        request.sha256,
        request.owner,
        request.namespace,
        keep=request.keep,
        max_bytes=request.max_download_bytes,
        expires=request.expires,
    )
    return _token(settings, scope)


def source_get_token(settings: Settings, sha256: str, owner_uid: str) -> str:
    """Reads (and drops) the source `sha256` staged for ModelDeployment `owner_uid`."""
    return _token(settings, integrity.source_get_scope(sha256, owner_uid))


def route_token(settings: Settings, namespace: str, name: str) -> str:
    """Reads the route table of ModelDeployment `namespace/name` from the operator's feed."""
    return _token(settings, integrity.route_scope(namespace, name))


def triton_admin_key(settings: Settings, namespace: str, name: str) -> str:
    """Opens the admin APIs of ModelDeployment `namespace/name`'s Triton pods (render/revision.py):
    each ModelDeployment its own, so a tenant that reads its pods' args learns only its own."""
    return _token(settings, integrity.triton_admin_scope(namespace, name))


def receipt_valid(settings: Settings, receipt: str | None, sha256: str, owner_uid: str) -> bool:
    """Whether `receipt` proves the engine server got `sha256`'s bytes for `owner_uid` (kept
    for a build or not)."""
    return any(receipt_kept(settings, receipt, sha256, owner_uid, kept) for kept in (True, False))


def receipt_kept(
    settings: Settings, receipt: str | None, sha256: str, owner_uid: str, kept: bool
) -> bool:
    """Whether `receipt` is the engine server's for these bytes, kept (or not)."""
    key = settings.transfer_key_bytes
    scope = integrity.receipt_scope(sha256, owner_uid, kept=kept)
    return key is not None and integrity.token_valid(key, scope, receipt)


def transfer_key_fingerprint(settings: Settings) -> str:
    """A short digest naming the transfer key without revealing it ("" without a key)."""
    return _token(settings, "fingerprint")[:12]
