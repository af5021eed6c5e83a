"""Deterministic DNS-1123 names of every child object, and the label value of a ModelDeployment.

A ModelDeployment name is a DNS-1123 subdomain (up to 253 characters, dots allowed), but
Services need a DNS-1035 label and every name the operator derives must fit 63 characters. Names
that already fit are used as they are (so `kubectl get deploy resnet-r3` is obvious); anything
else is cut and suffixed with a short hash of the full name, so two different long names never
collide and the same name always maps to the same children.
"""

from __future__ import annotations

import hashlib
import re

from modelops_contract.key import key_digest

MAX_NAME = 63
HASH_CHARS = 8
BUILD_DIGEST_CHARS = 10

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_REVISION_SUFFIX = re.compile(r"-r([0-9]+)$")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def _fit(name: str, room: int) -> str:
    """`name` when it is a DNS-1035 label of at most `room` characters, else a hashed stand-in."""
    if len(name) <= room and _DNS1035.match(name):
        return name
    cleaned = re.sub(r"[^a-z0-9-]", "-", name.lower())
    prefix = cleaned[: room - HASH_CHARS - 1].strip("-")
    if not prefix or not prefix[0].isalpha():
        # A DNS-1035 label starts with a letter: keep the hint of the name after a fixed "md".
        prefix = ("md-" + prefix)[: room - HASH_CHARS - 1].rstrip("-")
    return f"{prefix}-{_short_hash(name)}"


def service_name(md_name: str) -> str:
    """The one Service of a ModelDeployment: its own name when that is a valid Service name."""
    return _fit(md_name, MAX_NAME)


def build_job_name(namespace: str, md_name: str, key: str) -> str:
    """`<namespace>-<name>-<hash>-build-<digest[:10]>`, in the operator's namespace: one Job per
    ModelDeployment and engine key (re-creating it is idempotent), never two owners' alike."""
    suffix = (
        f"-{_short_hash(f'{namespace}/{md_name}')}-build-{key_digest(key)[:BUILD_DIGEST_CHARS]}"
    )
    return _fit(f"{namespace}-{md_name}", MAX_NAME - len(suffix)) + suffix


def source_job_name(md_name: str, key: str) -> str:
    """`<name>-source-<digest[:10]>`: the source Job of an engine key, in the tenant's namespace."""
    suffix = f"-source-{key_digest(key)[:BUILD_DIGEST_CHARS]}"
    return _fit(md_name, MAX_NAME - len(suffix)) + suffix


def revision_name(md_name: str, revision: int) -> str:
    """`<name>-r<N>`: the Deployment and the ConfigMap of one revision."""
    suffix = f"-r{revision}"
    return _fit(md_name, MAX_NAME - len(suffix)) + suffix


def router_name(md_name: str) -> str:
    """`<name>-router`: the router's Deployment and ConfigMap."""
    suffix = "-router"
    return _fit(md_name, MAX_NAME - len(suffix)) + suffix


def validation_job_name(md_name: str, revision: int) -> str:
    """`<name>-validate-r<N>`: the one validation Job of a revision."""
    suffix = f"-validate-r{revision}"
    return _fit(md_name, MAX_NAME - len(suffix)) + suffix


def revision_of(child_name: str) -> int | None:
    """The revision number at the end of a `<name>-r<N>` child name, or None."""
    match = _REVISION_SUFFIX.search(child_name)
    return int(match.group(1)) if match else None


def label_value(md_name: str) -> str:
    """The ModelDeployment name as a label value (<= 63 characters, hashed beyond that)."""
    if len(md_name) <= MAX_NAME:
        return md_name
    return f"{md_name[: MAX_NAME - HASH_CHARS - 1].rstrip('.-')}-{_short_hash(md_name)}"
