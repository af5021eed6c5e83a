"""Namespaces for operators that watch only some namespaces, as `modelops operator` does with
MODELOPS_NAMESPACES: kopf then LISTs and WATCHes `/api/v1/namespaces` to learn which of them
exist. kmock's path parser reads `namespaces/<x>` as the start of a namespaced path, so that
request fails inside kmock (500) before any route. `served_namespaces` teaches the parser the
cluster-scoped Namespace paths for the duration of a test and stores the namespaces the test
side keeps as kmock objects, so kopf lists and watches them as on a real API server.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from kmock._internal import parsing

from modelops_operator.k8s import resources as r
from tests.support.kubernetes_emulator import Cluster

_original = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """`/api/v1/namespaces` and `/api/v1/namespaces/NAME` are the Namespace resource."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        name = parts[3] if len(parts) == 4 else None
        return parsing.ParsedPath("", "v1", "namespaces", None, name, None)
    return _original(path)


def parse_namespace_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """kmock parses Namespace paths (until the test ends: `monkeypatch` undoes it)."""
    monkeypatch.setattr(parsing, "parse_path", _parse_path)


async def store_namespaces(cluster: Cluster, names: Iterable[str]) -> None:
    """The namespaces as objects kopf's namespace observer lists (the test side already keeps
    them in `cluster.namespaces`)."""
    for name in names:
        body = cluster.namespaces[name]
        await cluster._send("POST", r.NAMESPACES.path(None), body)
