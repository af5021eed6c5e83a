"""Gather everything decide.reconcile needs about one ModelDeployment's children."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ..decide.inputs import Observed
from ..render.common import LABEL_MANAGED_BY, MANAGED_BY, owner_labels
from ..render.names import service_name
from .client import JsonDict, KubeClient, labels_match
from .resources import CONFIGMAPS, DEPLOYMENTS, JOBS, PODS, SERVICES
from .store import EngineStore

# Set by the Job controller on its pods (the older key first appeared in every version).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
FINISHED_CONDITIONS = frozenset({"Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"})


def job_finished(job: Mapping[str, Any]) -> bool:
    """Complete or Failed (by condition, or by counts where conditions are not set yet)."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") in FINISHED_CONDITIONS and cond.get("status") == "True":
            return True
    return bool(status.get("succeeded")) or (
        bool(status.get("failed")) and not status.get("active")
    )


def termination_message(pods: list[JsonDict]) -> str | None:
    """The newest terminated container's message among a Job's pods."""
    found: list[tuple[str, str]] = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            message = terminated.get("message")
            if message:
                found.append((str(terminated.get("finishedAt") or ""), str(message)))
    return max(found)[1] if found else None


def pods_of(deployment: Mapping[str, Any], pods: list[JsonDict]) -> list[JsonDict]:
    """The pods a Deployment's selector (matchLabels) selects."""
    selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not selector:
        return []
    return [p for p in pods if labels_match(p, selector)]


def _by_name(items: list[JsonDict]) -> dict[str, JsonDict]:
    return {i["metadata"]["name"]: i for i in items if (i.get("metadata") or {}).get("name")}


class Observer:
    """Reads one ModelDeployment's children; remembers build termination messages (immutable)."""

    def __init__(self, client: KubeClient, store: EngineStore) -> None:
        self._client = client
        self._store = store
        self._messages: dict[str, str] = {}

    def forget(self, job_uids: list[str]) -> None:
        """Drop cached termination messages of Jobs that are gone."""
        for uid in job_uids:
            self._messages.pop(uid, None)

    async def observe(self, namespace: str, name: str, desired_key: str | None) -> Observed:
        """Owned Jobs, Deployments (+ their pods), ConfigMaps, the Service and the store entry."""
        labels = owner_labels(name)
        jobs_l, deployments_l, configmaps_l, service, store_entry = await asyncio.gather(
            self._client.list(JOBS, namespace, labels),
            self._client.list(DEPLOYMENTS, namespace, labels),
            self._client.list(CONFIGMAPS, namespace, labels),
            self._client.get_or_none(SERVICES, namespace, service_name(name)),
            self._store.entry(desired_key) if desired_key else _none(),
        )
        jobs = _by_name(jobs_l)
        deployments = _by_name(deployments_l)
        # Pods matter only once there are revisions: skip the list before the first rollout.
        pod_items = await self._client.list(PODS, namespace, labels) if deployments else []
        pods = {d: pods_of(dep, pod_items) for d, dep in deployments.items()}
        await asyncio.gather(*(self._attach_message(namespace, j) for j in jobs.values()))
        if service is not None and not labels_match(service, {LABEL_MANAGED_BY: MANAGED_BY}):
            service = None  # a user's Service of the same name is not ours to manage
        return Observed(
            jobs=jobs,
            deployments=deployments,
            pods=pods,
            configmaps=frozenset(_by_name(configmaps_l)),
            service=service,
            store_entry=store_entry,
        )

    async def _attach_message(self, namespace: str, job: JsonDict) -> None:
        status = job.setdefault("status", {})
        if status.get("terminationMessage") or not job_finished(job):
            return
        meta = job.get("metadata") or {}
        uid = str(meta.get("uid") or meta.get("name"))
        message = self._messages.get(uid)
        if message is None:
            pods: list[JsonDict] = []
            for label in JOB_NAME_LABELS:
                pods = await self._client.list(PODS, namespace, {label: meta["name"]})
                if pods:
                    break
            message = termination_message(pods)
            if message is None:
                return
            self._messages[uid] = message
        status["terminationMessage"] = message


async def _none() -> None:
    return None
