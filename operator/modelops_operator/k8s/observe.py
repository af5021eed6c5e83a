"""Gather everything decide.reconcile needs about one ModelDeployment's children."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ..decide.inputs import Observed, ObserveKeys
from ..render.common import LABEL_COMPONENT, LABEL_NAME, ROUTER_APP
from ..render.names import label_value, router_name, service_name
from .cache import ChildCache
from .client import JsonDict, labels_match
from .resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    GRPCROUTES,
    HTTPROUTES,
    JOBS,
    PODS,
    SERVICES,
    Resource,
)
from .store import EngineStore

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


def owned_by(obj: Mapping[str, Any], uid: str | None, kind: str | None = None) -> bool:
    """True when `obj`'s controller ownerReference is the object `uid` (of `kind`).

    Labels are only a filter: an object that carries our labels but not our reference was made
    by someone else, and is never read, adopted, changed or deleted as ours.
    """
    if not uid:
        return True  # an owner that was never stored (tests that build bodies by hand)
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if (
            ref.get("uid") == uid
            and ref.get("controller")
            and (kind is None or ref.get("kind") == kind)
        ):
            return True
    return False


def replica_set_pod(pod: Mapping[str, Any], deployment_name: str) -> bool:
    """A pod a Deployment's ReplicaSet made: controlled by `<deployment>-<pod-template-hash>`."""
    meta = pod.get("metadata") or {}
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "ReplicaSet":
            return (
                template_hash is not None
                and ref.get("name") == f"{deployment_name}-{template_hash}"
            )
    return False


def termination_message(pods: list[JsonDict], job_uid: str | None = None) -> str | None:
    """The newest terminated container's message among the pods the Job itself made."""
    found: list[tuple[str, str]] = []
    for pod in pods:
        if job_uid and not owned_by(pod, job_uid, "Job"):
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            message = terminated.get("message")
            if message:
                found.append((str(terminated.get("finishedAt") or ""), str(message)))
    return max(found)[1] if found else None


def pods_of(deployment: Mapping[str, Any], pods: list[JsonDict]) -> list[JsonDict]:
    """The pods the Deployment's ReplicaSets made (its selector, then the owner reference)."""
    selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not selector:
        return []
    name = str((deployment.get("metadata") or {}).get("name", ""))
    return [p for p in pods if labels_match(p, selector) and replica_set_pod(p, name)]


def _by_name(items: list[JsonDict]) -> dict[str, JsonDict]:
    return {i["metadata"]["name"]: i for i in items if (i.get("metadata") or {}).get("name")}


class Observer:
    """Reads one ModelDeployment's children from the watch-fed cache (no LIST per reconcile);
    remembers build termination messages (immutable). One method per kind: fields of Observed
    that need another kind get their own method."""

    def __init__(self, cache: ChildCache, store: EngineStore) -> None:
        self._cache = cache
        self._store = store
        self._messages: dict[str, str] = {}

    def forget(self, job_uids: list[str]) -> None:
        """Drop cached termination messages of Jobs that are gone."""
        for uid in job_uids:
            self._messages.pop(uid, None)

    def children(
        self, resource: Resource, namespace: str, name: str, uid: str | None
    ) -> list[JsonDict]:
        """Cached objects of one kind that the ModelDeployment controls (copies: decide and
        the k8s layer may annotate them)."""
        kind = self._cache.kind(resource)
        if uid:
            found = [o for o in kind.owned(uid) if _namespace(o) == namespace]
        else:  # an owner that was never stored (bodies built by hand): labels, then the check
            found = kind.labelled(namespace, label_value(name))
        return [dict(o) for o in found if owned_by(o, uid)]

    def pods(self, namespace: str, name: str) -> list[JsonDict]:
        """Cached pods labelled for the ModelDeployment (serving and router pods)."""
        return self._cache.kind(PODS).labelled(namespace, label_value(name))

    async def observe(
        self, namespace: str, name: str, uid: str | None, keys: ObserveKeys
    ) -> Observed:
        """Owned Jobs, Deployments (+ their pods), ConfigMaps, Services, routes, store entries."""
        store_entry, serving = await asyncio.gather(
            self._store.entry(keys.desired) if keys.desired else _none(),
            self._store.entry(keys.serving) if keys.serving else _none(),
        )
        jobs_all = _by_name(self.children(JOBS, namespace, name, uid))
        deployments_all = _by_name(self.children(DEPLOYMENTS, namespace, name, uid))
        configmaps = _by_name(self.children(CONFIGMAPS, namespace, name, uid))
        services = _by_name(self.children(SERVICES, namespace, name, uid))
        routes = self._routes(namespace, name, uid) if keys.gateway else {}
        jobs = {n: j for n, j in jobs_all.items() if _component(j) != "validate"}
        validation_jobs = {n: j for n, j in jobs_all.items() if _component(j) == "validate"}
        deployments = {n: d for n, d in deployments_all.items() if _app(d) != ROUTER_APP}
        router = next((d for d in deployments_all.values() if _app(d) == ROUTER_APP), None)
        pod_items = self.pods(namespace, name) if deployments_all else []
        pods = {d: pods_of(dep, pod_items) for d, dep in deployments.items()}
        router_pods = pods_of(router, pod_items) if router is not None else []
        for job in jobs_all.values():
            self._attach_message(job)
        return Observed(
            jobs=jobs,
            validation_jobs=validation_jobs,
            deployments=deployments,
            pods=pods,
            configmaps=frozenset(configmaps),
            services=services,
            service=services.get(service_name(name)),
            router=router,
            router_config=configmaps.get(router_name(name)),
            router_pods=tuple(router_pods),
            routes=routes,
            store_entry=store_entry,
            serving_entry=serving,
        )

    def _routes(self, namespace: str, name: str, uid: str | None) -> dict[str, JsonDict]:
        """HTTPRoutes and GRPCRoutes by "Kind/name" (none cached without the Gateway API)."""
        found: dict[str, JsonDict] = {}
        for resource in (HTTPROUTES, GRPCROUTES):
            for item in self.children(resource, namespace, name, uid):
                found[f"{resource.kind}/{item['metadata']['name']}"] = {
                    **item,
                    "kind": resource.kind,
                }
        return found

    def _attach_message(self, job: JsonDict) -> None:
        status = dict(job.get("status") or {})
        job["status"] = status  # a copy: the cached object stays as the watch delivered it
        if status.get("terminationMessage") or not job_finished(job):
            return
        meta = job.get("metadata") or {}
        uid = str(meta.get("uid") or meta.get("name"))
        message = self._messages.get(uid)
        if message is None:
            pods = self._cache.kind(PODS).owned(str(meta.get("uid"))) if meta.get("uid") else []
            message = termination_message(pods, meta.get("uid"))
            if message is None:
                return
            self._messages[uid] = message
        status["terminationMessage"] = message


async def _none() -> None:
    return None


def _component(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT, ""))


def _app(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_NAME, ""))


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")
