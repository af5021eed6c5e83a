"""kopf handlers of ModelDeployments: each one is read -> decide -> apply through the runtime."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ..api import GROUP, PLURAL, VERSION
from ..k8s.errors import ApiError
from ..k8s.orphans import delete_build_jobs
from .runtime import InvalidSpecError, Operator

logger = logging.getLogger(__name__)

FINALIZER = "modelops.dev/finalizer"
# Change handlers retry forever (the timer is the safety net anyway); kopf's backoff is the floor.
BACKOFF_SECONDS = 5.0
MAX_DELAY_SECONDS = 120.0


def _retry_delay(retry: int) -> float:
    return float(min(MAX_DELAY_SECONDS, BACKOFF_SECONDS * 2 ** min(retry, 6)))


async def _reconcile(op: Operator, body: kopf.Body, retry: int) -> None:
    # Returns nothing: kopf would store a handler's result in status, which is ours alone.
    meta = body.metadata
    try:
        await op.reconcile(meta.namespace or "default", meta.name or "", dict(body))
    except InvalidSpecError as exc:
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc
    except ApiError as exc:
        # Transient (429/5xx/unreachable) or not (403 until RBAC is fixed): retry with backoff.
        raise kopf.TemporaryError(str(exc), delay=_retry_delay(retry)) from exc


def has_revision(status: kopf.Status, **_: Any) -> bool:
    """True once a revision serves or rolls out: only then are there pods to read."""
    revision = status.get("revision") or {}
    return revision.get("current") is not None or revision.get("candidate") is not None


def register(registry: kopf.OperatorRegistry, op: Operator) -> None:
    """Register the ModelDeployment handlers into `registry`."""
    interval = op.settings.reconcile_interval_seconds
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.create(*resource, registry=registry, id="create", backoff=BACKOFF_SECONDS)
    async def md_create(body: kopf.Body, retry: int, **_: Any) -> None:
        await _reconcile(op, body, retry)

    # kopf ignores status changes here: spec, labels and annotations (modelops.dev/retry) count.
    @kopf.on.update(*resource, registry=registry, id="update", backoff=BACKOFF_SECONDS)
    async def md_update(body: kopf.Body, retry: int, **_: Any) -> None:
        await _reconcile(op, body, retry)

    @kopf.on.resume(*resource, registry=registry, id="resume", backoff=BACKOFF_SECONDS)
    async def md_resume(body: kopf.Body, retry: int, **_: Any) -> None:
        await _reconcile(op, body, retry)

    @kopf.on.event(*resource, registry=registry, id="event")
    async def md_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        if event.get("type") == "DELETED":
            op.forget(body.metadata.namespace or "default", body.metadata.name or "")
        else:
            op.seen(body)

    @kopf.timer(*resource, registry=registry, id="timer", interval=interval, idle=interval)
    async def md_timer(body: kopf.Body, **_: Any) -> None:
        namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
        if op.recently_reconciled(namespace, name, within=interval * 0.9):
            return  # a child event reconciled it already: the safety net has nothing to add
        try:
            await op.reconcile(namespace, name, dict(body))
        except InvalidSpecError:
            return
        except ApiError as exc:
            logger.warning("periodic reconcile failed: %s", exc)

    # One task per ModelDeployment, sleeping until its own next analysis or scaling look; only
    # while a revision exists, so a thousand ModelDeployments still building cost no tasks.
    if op.options.telemetry:

        @kopf.daemon(
            *resource,
            registry=registry,
            id="telemetry",
            cancellation_timeout=1.0,
            when=has_revision,
        )
        async def md_telemetry(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
            namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
            await op.telemetry.run(namespace, name, stopped.wait())

    @kopf.on.delete(*resource, registry=registry, id="delete", backoff=BACKOFF_SECONDS)
    async def md_delete(body: kopf.Body, retry: int, **_: Any) -> None:
        namespace, name = body.metadata.namespace or "default", body.metadata.name or ""
        try:
            deleted = await op.delete_children(namespace, name)
            deleted += await delete_build_jobs(
                op.client, op.settings.operator_namespace, namespace, name
            )
        except ApiError as exc:
            raise kopf.TemporaryError(str(exc), delay=_retry_delay(retry)) from exc
        op.forget(namespace, name)
        if deleted:
            logger.info("deleted children: %s", ", ".join(deleted))
