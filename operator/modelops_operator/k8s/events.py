"""core/v1 Events on ModelDeployments, aggregated like client-go (count, lastTimestamp)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..observability import log_ref
from .client import KubeClient
from .errors import ApiError, NotFoundError
from .resources import EVENTS

logger = logging.getLogger(__name__)

COMPONENT = "modelops-operator"
# Repeats of the same event within this window bump `count` instead of adding a new object.
AGGREGATE_SECONDS = 600.0
CACHE_SIZE = 4096
MESSAGE_LIMIT = 1024


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    first: str
    at: float


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Posts Events through the client; a failure is logged, never raised."""

    def __init__(self, client: KubeClient, *, host: str | None = None) -> None:
        self._client = client
        self._host = host
        self._seen: OrderedDict[tuple[str, ...], _Seen] = OrderedDict()
        self.posted = 0

    async def emit(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """One Event about `involved` (an API object); repeats are aggregated."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        message = message[:MESSAGE_LIMIT]
        key = (namespace, meta.get("name", ""), meta.get("uid") or "", type_, reason, message)
        try:
            if await self._bump(key):
                return
            await self._create(key, involved, type_, reason, message)
        except ApiError as exc:
            logger.warning(
                "could not post event %s: %s",
                reason,
                exc,
                extra=log_ref(namespace, meta.get("name")),
            )

    async def _bump(self, key: tuple[str, ...]) -> bool:
        seen = self._seen.get(key)
        if seen is None or time.monotonic() - seen.at > AGGREGATE_SECONDS:
            return False
        seen.count += 1
        seen.at = time.monotonic()
        self._seen.move_to_end(key)
        try:
            await self._client.merge_patch(
                EVENTS, seen.namespace, seen.name, {"count": seen.count, "lastTimestamp": _now()}
            )
        except NotFoundError:
            # Events expire (1 h by default): start a new one.
            del self._seen[key]
            return False
        self.posted += 1
        return True

    async def _create(
        self, key: tuple[str, ...], involved: Mapping[str, Any], type_: str, reason: str, msg: str
    ) -> None:
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = _now()
        # The same naming as client-go's recorder: <object>.<unique hex>.
        name = f"{meta.get('name', 'unknown')}.{time.time_ns():x}"
        ref = {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {k: v for k, v in ref.items() if v is not None},
            "type": type_,
            "reason": reason,
            "message": msg,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT, **({"host": self._host} if self._host else {})},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._host or COMPONENT,
        }
        await self._client.create(EVENTS, namespace, body)
        self.posted += 1
        self._seen[key] = _Seen(name, namespace, 1, now, time.monotonic())
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
