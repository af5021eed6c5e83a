"""Operator-level kopf handlers: login, startup settings, cleanup, liveness probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp.web
import kopf

from ..observability import MetricsServer, Probe
from ..render.common import LABEL_MANAGED_BY, MANAGED_BY
from .build_jobs import sweep_forever
from .children import WATCHED
from .leadership import Leadership
from .runtime import Operator

logger = logging.getLogger(__name__)

ANNOTATION_PREFIX = "modelops.dev"


def configure(settings: kopf.OperatorSettings, op: Operator) -> None:
    """kopf's settings for this operator."""
    # We post our own Events (k8s/events.py) with our reasons; kopf's would double them.
    settings.posting.enabled = False
    # kopf's default stays: LIST, then WATCH from the list's resourceVersion (a real API
    # server streams initial events on WATCH only from Kubernetes 1.34).
    # The server ends a watch after server_timeout; the client gives it a margin on top.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # kopf's peering is no lease (handlers/leadership.py is): no peering objects, no RBAC.
    settings.peering.standalone = True
    # Only watching handlers are registered, so kopf stores nothing on objects; should one ever
    # be added, kopf's bookkeeping stays out of status, which is the reconcile's alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Server-side filtering: watch only our own children, never every pod in the cluster.
    for res in WATCHED:
        settings.watching.label_selectors[res.group, res.version, res.plural] = (
            f"{LABEL_MANAGED_BY}={MANAGED_BY}"
        )


def register(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """Register the operator-level handlers into `registry`."""
    server: MetricsServer | None = None
    leadership = Leadership(op)
    sweeper: asyncio.Task[None] | None = None

    @kopf.on.login(registry=registry, id="login")
    async def login(**kwargs: Any) -> Any:
        return await op.login(**kwargs)

    @kopf.on.startup(registry=registry, id="startup")
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        nonlocal server, sweeper
        op.loop = asyncio.get_running_loop()
        configure(settings, op)
        sweeper = asyncio.create_task(sweep_forever(op))
        host = op.options.metrics_host
        if host is not None:
            port = op.options.metrics_port
            routes = [
                aiohttp.web.get("/routes/{namespace}/{name}", op.routes.handle),
                aiohttp.web.post("/routes/{namespace}/{name}/demand", op.demand.handle),
            ]
            server = MetricsServer(op.metrics, op.health.probes(), routes)
            await server.start(host, op.settings.metrics_port if port is None else port)
            logger.info("serving /metrics and /healthz on %s:%s", host, server.port)
        leadership.start()

    @kopf.on.cleanup(registry=registry, id="cleanup")
    async def cleanup(**_: Any) -> None:
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await leadership.stop()
        op.routes.close()
        if server is not None:
            await server.stop()
        await op.close()

    for name, probe in op.health.probes().items():
        kopf.on.probe(registry=registry, id=name)(_as_kopf_probe(probe))


def _as_kopf_probe(probe: Probe) -> Callable[..., Awaitable[Any]]:
    async def kopf_probe(**_: Any) -> Any:
        return await probe()

    return kopf_probe
