"""The router pod of a Router-mode ModelDeployment, for operator tests that are not about
routing: Router-mode Ready needs a Ready router pod that runs the newest route table, as on a
real cluster. The real router (HAProxy from the operator's config, the agent long-polling the
operator's route feed) over a stand-in of the revision's Service; its pod is created in the
emulator, Ready, when the operator creates the router Deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops_builder.triton_local import free_port
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name, router_name
from modelops_operator.render.tokens import route_token
from modelops_operator.settings import Settings
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.router_harness import fed_router, services

ROUTER_POD_IP = "10.98.0.1"


@dataclass(frozen=True)
class RouterPod:
    """What the operator needs to feed the router and read it."""

    feed_port: int
    figures_url: str
    settings: Settings

    def operator_options(self) -> dict[str, Any]:
        """run_operator's options: the route feed on loopback, the router pod's figures."""
        figures = self.figures_url
        settings = self.settings

        def metrics_url(pod: Any) -> str:
            ip = str((pod.get("status") or {}).get("podIP") or "")
            return figures if ip == ROUTER_POD_IP else "http://127.0.0.1:9/metrics"

        routed = settings.model_copy(update={"routes_url": f"http://127.0.0.1:{self.feed_port}"})
        return {
            "settings": routed,
            "metrics_url": metrics_url,
            "metrics_host": "127.0.0.1",
            "metrics_port": self.feed_port,
        }


async def _start_pod(cluster: Cluster, md_name: str, namespace: str) -> None:
    router = router_name(md_name)
    await eventually(
        lambda: cluster.get(r.DEPLOYMENTS, router, namespace), 120, "the router Deployment"
    )
    await cluster.add_pod(router, ROUTER_POD_IP, namespace=namespace)
    await cluster.ready_deployment(router, namespace)


@contextlib.asynccontextmanager
async def router_pod(
    cluster: Cluster, md_name: str, namespace: str, workdir: Path, settings: Settings
) -> AsyncIterator[RouterPod]:
    """The router of `md_name`'s first revision, reading the feed of an operator with
    `settings` (its token, as the pod gets it); stopped at the end."""
    port = free_port()
    feed = f"http://127.0.0.1:{port}/routes/{namespace}/{md_name}"
    token = route_token(settings, namespace, md_name)
    with services(workdir, {revision_name(md_name, 1): {}}) as proxies:
        async with fed_router(proxies, feed, token) as router:
            task = asyncio.create_task(_start_pod(cluster, md_name, namespace))
            try:
                yield RouterPod(port, router.figures_url, settings)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, AssertionError):
                    await task
