"""kube-proxy for one Service of the emulator: a connection balancer whose endpoints follow the
Service's selector and its pods' readiness, one second late, and that keeps every open
connection on the pod it chose, whatever the selector says later (conntrack does that).

The emulator has no network: a pod's IP maps to the real process behind it (a tritonserver,
or the real router), given by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_operator.k8s import resources as r
from tests.support.kubernetes_emulator import Cluster
from tests.support.router_harness import ServiceProxy

ENDPOINT_LAG_SECONDS = 1.0  # from a pod's readiness or a selector change to every node


@dataclass(frozen=True)
class Backend:
    """The addresses of the process behind a pod IP (what ServiceProxy connects to)."""

    http_url: str
    grpc_url: str
    metrics_url: str


def _selected(cluster: Cluster, service: str, namespace: str) -> set[str]:
    """IPs of the Ready pods the Service's selector matches now (its endpoints)."""
    found = cluster.get(r.SERVICES, service, namespace)
    selector = ((found or {}).get("spec") or {}).get("selector") or {}
    if not selector:
        return set()
    ips = set()
    for name in cluster.names(r.PODS, namespace):
        pod = cluster.get(r.PODS, name, namespace) or {}
        labels = (pod.get("metadata") or {}).get("labels") or {}
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if ready and all(labels.get(k) == v for k, v in selector.items()) and status.get("podIP"):
            ips.add(str(status["podIP"]))
    return ips


@contextlib.asynccontextmanager
async def followed_service(
    cluster: Cluster,
    service: str,
    backends: Mapping[str, Any],
    workdir: Path,
    namespace: str = "default",
) -> AsyncIterator[ServiceProxy]:
    """A started ServiceProxy for `service` whose endpoints follow the emulator (lagging);
    `backends` maps pod IPs to their processes."""
    proxy = ServiceProxy(f"follow-{service}", {}, workdir).start()
    active: set[str] = set()
    pending: set[asyncio.Task[None]] = set()

    async def apply_later(ips: set[str]) -> None:
        await asyncio.sleep(ENDPOINT_LAG_SECONDS)
        for ip in sorted(active - ips):
            proxy.remove_endpoint(ip)  # open connections stay where they are
        for ip in sorted(ips - active):
            proxy.add_endpoint(ip, backends[ip])
        active.clear()
        active.update(ips)

    async def follow() -> None:
        seen: set[str] = set()
        while True:
            now = _selected(cluster, service, namespace) & set(backends)
            if now != seen:
                seen = now
                task = asyncio.create_task(apply_later(set(now)))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(follow())
    try:
        yield proxy
    finally:
        for task in (watcher, *pending):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        proxy.stop()
