"""Read a ModelDeployment's router pods: which table each runs, and what its clients saw.

Each router pod's agent serves a small page (per-revision responses, gRPC errors, the table
version HAProxy runs). A reading tells the reconcile whether a zero-weight revision can go, and
gives the canary analysis per-revision client figures between two readings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..decide.traffic import RouterReport
from ..k8s.client import labels_match
from ..k8s.observe import replica_set_pod
from ..metrics.router import (
    RevisionTraffic,
    RouterPageError,
    RouterSample,
    combine,
    parse_router_page,
    router_interval,
)
from ..metrics.scrape import MAX_BODY_BYTES, Slot, fetch_page
from ..render.names import router_name
from ..render.router import router_selector
from .pods import PodSource

Pod = Mapping[str, Any]
PAGE_LIMIT = MAX_BODY_BYTES // 16  # an agent's page is a few KiB


@dataclass
class RouterReading:
    """One reading of every router pod."""

    report: RouterReport
    samples: dict[str, RouterSample] = field(default_factory=dict)

    def since(self, previous: Mapping[str, RouterSample]) -> dict[int, RevisionTraffic] | None:
        """Client traffic per revision since `previous` (None until every pod has a baseline)."""
        if not self.samples or any(pod not in previous for pod in self.samples):
            return None
        return combine(
            [router_interval(previous[pod], sample) for pod, sample in self.samples.items()]
        )


def _ready(pod: Pod) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def read_router(
    source: PodSource,
    session: aiohttp.ClientSession,
    namespace: str,
    md_name: str,
    url_of: Callable[[Pod], str | None],
    slot: Slot,
) -> RouterReading:
    """Every running router pod's page (pods that cannot be read report nothing)."""
    selector = router_selector(md_name)
    deployment = router_name(md_name)
    mine = [
        p
        for p in source.pods(namespace, md_name)
        if labels_match(p, selector) and replica_set_pod(p, deployment)
    ]
    samples: dict[str, RouterSample] = {}
    for pod in mine:
        url = url_of(pod)
        if url is None:
            continue
        try:
            async with slot():  # the namespace's connection budget; the timeout starts inside
                text = await fetch_page(session, url, max_bytes=PAGE_LIMIT)
            sample = await asyncio.to_thread(parse_router_page, text)
            samples[str((pod.get("metadata") or {}).get("name"))] = sample
        except (OSError, ValueError, RouterPageError, aiohttp.ClientError):
            continue
    report = RouterReport(
        pods=len(mine),
        ready_pods=sum(1 for p in mine if _ready(p)),
        applied_versions=tuple(
            s.applied_version for s in samples.values() if s.applied_version >= 0
        ),
    )
    return RouterReading(report, samples)
