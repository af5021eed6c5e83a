"""`modelops operator`: kopf with the production login, Settings from MODELOPS_* env."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from .handlers import OperatorOptions, build
from .observability import configure_logging
from .settings import Settings

logger = logging.getLogger(__name__)


async def production_login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own logins, in kopf's order: in-cluster ServiceAccount, then a kubeconfig."""
    info = kopf.login_with_service_account(**kwargs)
    if info is None:
        info = kopf.login_with_kubeconfig(**kwargs)
    return info


async def serve(settings: Settings, stop_flag: asyncio.Event | None = None) -> None:
    """Run the operator until stopped (a signal, or `stop_flag`)."""
    registry, _ = build(OperatorOptions(settings=settings, login=production_login))
    await kopf.operator(
        registry=registry,
        clusterwide=not settings.namespaces,
        namespaces=watched_namespaces(settings),
        stop_flag=stop_flag,
    )


def watched_namespaces(settings: Settings) -> list[str]:
    """The watched namespaces and the operator's own, where the build Jobs run (their events
    wake their ModelDeployment up); empty when cluster-wide."""
    if not settings.namespaces:
        return []
    return sorted({*settings.namespaces, settings.operator_namespace})


def run_operator(verbose: bool) -> int:
    """Entry point of `modelops operator`: 0 on a clean stop, 1 when it could not run."""
    try:
        settings = Settings()
    except ValueError as exc:
        configure_logging("plain", verbose)
        logger.error("invalid settings: %s", exc)
        return 1
    configure_logging(settings.log_format, verbose)
    if settings.mac_key is None or settings.transfer_key_bytes is None:
        logger.error(
            "MODELOPS_STORE_MAC_KEY and MODELOPS_TRANSFER_KEY must be set (the chart takes them "
            "from the Secret %s): without them no store entry can be verified",
            settings.store_key_secret,
        )
        return 1
    scope = ",".join(settings.namespaces) or "cluster-wide"
    logger.info("starting modelops operator (%s)", scope)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 0
    except Exception:
        logger.exception("operator stopped on an error")
        return 1
    return 0
