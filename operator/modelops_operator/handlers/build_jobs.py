"""Build Jobs of deleted ModelDeployments: they run in the operator's namespace, where garbage
collection cannot take them (decide/orphans.py). The leader deletes them when it sees the
deletion, and in a periodic sweep over the caches (no LIST, no GET) for deletions it missed
(a restart, a standby's term); ttlSecondsAfterFinished takes finished ones in any case."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ..decide.orphans import Owner, orphaned, owner_of
from ..k8s.errors import ApiError
from ..k8s.lease import NotLeaderError
from ..k8s.resources import JOBS
from ..render.names import label_value
from .runtime import Operator

logger = logging.getLogger(__name__)

SWEEP_MIN_SECONDS = 120.0


def _alive(op: Operator, owner: Owner) -> bool:
    namespace, name, uid = owner
    body = op.latest((namespace, name))
    return body is not None and (body.get("metadata") or {}).get("uid") == uid


def _cached_build_jobs(op: Operator) -> list[Mapping[str, Any]]:
    build_namespace = op.settings.operator_namespace
    objects = op.cache.kind(JOBS).objects
    return [job for (namespace, _), job in sorted(objects.items()) if namespace == build_namespace]


async def _delete(op: Operator, jobs: list[Mapping[str, Any]]) -> list[str]:
    deleted: list[str] = []
    for job in jobs:
        meta = job.get("metadata") or {}
        name, namespace = str(meta.get("name")), str(meta.get("namespace"))
        try:
            gone = await op.client.delete(JOBS, namespace, name, uid=meta.get("uid"))
        except NotLeaderError:
            return deleted  # the new leader's sweep takes over
        except ApiError as exc:  # the next sweep tries again; the TTL is the backstop
            logger.warning("build Job %s/%s not deleted: %s", namespace, name, exc)
            continue
        op.cache.deleted(JOBS, job)
        if gone:
            owner = owner_of(job) or ("?", "?", "?")
            logger.info("deleted build Job %s: ModelDeployment %s/%s is gone", name, *owner[:2])
            deleted.append(f"Job/{name}")
    return deleted


async def sweep(op: Operator) -> list[str]:
    """On the leader: delete the cached build Jobs whose ModelDeployment is gone."""
    if not op.leading:
        return []
    return await _delete(op, orphaned(_cached_build_jobs(op), lambda owner: _alive(op, owner)))


async def delete_for(op: Operator, owner: Owner) -> list[str]:
    """On the leader: delete the build Jobs of a ModelDeployment whose deletion was seen."""
    if not op.leading:
        return []
    # The cache's label index holds them; no scan of every cached Job.
    labelled = op.cache.kind(JOBS).labelled(op.settings.operator_namespace, label_value(owner[1]))
    return await _delete(op, [job for job in labelled if owner_of(job) == owner])


async def sweep_forever(op: Operator) -> None:
    """`sweep` every few reconcile intervals until cancelled."""
    interval = max(SWEEP_MIN_SECONDS, 4 * op.settings.reconcile_interval_seconds)
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep(op)
        except Exception:  # never let the sweeper die: the next one tries again
            logger.exception("build Job sweep failed")
