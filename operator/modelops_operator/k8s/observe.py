"""Gather everything decide.reconcile needs about one ModelDeployment's children."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ..decide.inputs import Observed, ObserveKeys
from ..decide.pod_health import tampered_report
from ..render.common import (
    ANNOTATION_ENGINE_KEY,
    ANNOTATION_OWNER_UID,
    LABEL_COMPONENT,
    LABEL_NAME,
    LABEL_OWNER_NAMESPACE,
    ROUTER_APP,
)
from ..render.names import label_value, router_name, service_name
from ..render.revision import PULL_CONTAINER
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
from .store import EngineStore, StoreRead

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
    """The newest terminated container's message (init containers too: a build Job's build
    step) among the pods the Job itself made."""
    found: list[tuple[str, str]] = []
    for pod in pods:
        if job_uid and not owned_by(pod, job_uid, "Job"):
            continue
        status = pod.get("status") or {}
        for cs in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
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


def built_for(job: Mapping[str, Any], uid: str | None) -> bool:
    """A build Job in the operator's namespace is this ModelDeployment's when its owner
    annotation names its uid (no ownerReference can cross namespaces; only the operator writes
    in its namespace)."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return not uid or annotations.get(ANNOTATION_OWNER_UID) == uid


class Observer:
    """Reads one ModelDeployment's children from the watch-fed cache (no LIST per reconcile);
    remembers build termination messages (immutable). One method per kind: fields of Observed
    that need another kind get their own method.

    `build_namespace`: where its build Jobs run (the operator's own namespace)."""

    def __init__(
        self, cache: ChildCache, store: EngineStore, build_namespace: str | None = None
    ) -> None:
        self._cache = cache
        self._store = store
        self._build_namespace = build_namespace
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

    def build_jobs(self, namespace: str, name: str, uid: str | None) -> list[JsonDict]:
        """Cached build Jobs in the operator's namespace made for this ModelDeployment."""
        if not self._build_namespace:
            return []
        found = self._cache.kind(JOBS).labelled(self._build_namespace, label_value(name))
        return [
            dict(job)
            for job in found
            if _labels(job).get(LABEL_OWNER_NAMESPACE) == namespace
            and _component(job) == "build"
            and built_for(job, uid)
        ]

    def running_builds(self) -> dict[str, int]:
        """Unfinished build Jobs in the operator's namespace, by their owner's namespace."""
        running: dict[str, int] = {}
        if not self._build_namespace:
            return running
        for (namespace, _), job in self._cache.kind(JOBS).objects.items():
            if namespace != self._build_namespace or _component(job) != "build":
                continue
            if not job_finished(job):
                owner = _labels(job).get(LABEL_OWNER_NAMESPACE, "")
                running[owner] = running.get(owner, 0) + 1
        return running

    def pods(self, namespace: str, name: str) -> list[JsonDict]:
        """Cached pods labelled for the ModelDeployment (serving and router pods)."""
        return self._cache.kind(PODS).labelled(namespace, label_value(name))

    async def observe(
        self, namespace: str, name: str, uid: str | None, keys: ObserveKeys
    ) -> Observed:
        """Owned Jobs, Deployments (+ their pods), ConfigMaps, Services, routes, store entries."""
        desired, serving = await asyncio.gather(
            self._store.read(keys.desired) if keys.desired else _no_read(),
            self._store.entry(keys.serving) if keys.serving else _none(),
        )
        jobs_all = _by_name(self.children(JOBS, namespace, name, uid))
        deployments_all = _by_name(self.children(DEPLOYMENTS, namespace, name, uid))
        configmaps = _by_name(self.children(CONFIGMAPS, namespace, name, uid))
        services = _by_name(self.children(SERVICES, namespace, name, uid))
        routes = self._routes(namespace, name, uid) if keys.gateway else {}
        build_jobs = _by_name(self.build_jobs(namespace, name, uid))
        jobs = {n: j for n, j in jobs_all.items() if _component(j) != "validate"}
        validation_jobs = {n: j for n, j in jobs_all.items() if _component(j) == "validate"}
        deployments = {n: d for n, d in deployments_all.items() if _app(d) != ROUTER_APP}
        router = next((d for d in deployments_all.values() if _app(d) == ROUTER_APP), None)
        pod_items = self.pods(namespace, name) if deployments_all else []
        pods = {d: pods_of(dep, pod_items) for d, dep in deployments.items()}
        router_pods = pods_of(router, pod_items) if router is not None else []
        if keys.desired and await self._tamper_reports(deployments, pods):
            desired = await self._store.read(keys.desired)
        messages = {
            n: message
            for n, job in [*jobs_all.items(), *build_jobs.items()]
            if (message := self._message(job)) is not None
        }
        running = [*jobs.items(), *build_jobs.items()]
        job_pods = {n: self._job_pods(j) for n, j in running if not job_finished(j)}
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
            store_entry=desired.entry,
            serving_entry=serving,
            store_entry_digest=desired.digest,
            store_refusal=desired.refusal,
            build_jobs=build_jobs,
            job_pods=job_pods,
            messages=messages,
        )

    async def _tamper_reports(
        self, deployments: Mapping[str, JsonDict], pods: Mapping[str, list[JsonDict]]
    ) -> bool:
        """Pods whose engine pull refused the entry's bytes: the operator checks the entry
        itself (store.check_files) and refuses it when a file really differs."""
        condemned = False
        for name, deployment in deployments.items():
            report = tampered_report(pods.get(name, []), PULL_CONTAINER)
            key = ((deployment.get("metadata") or {}).get("annotations") or {}).get(
                ANNOTATION_ENGINE_KEY
            )
            if report and key:
                condemned |= await self._store.check_files(key, report)
        return condemned

    def _job_pods(self, job: JsonDict) -> tuple[JsonDict, ...]:
        """The pods a running Job made (to tell why one does not run)."""
        uid = (job.get("metadata") or {}).get("uid")
        if not uid:
            return ()
        return tuple(dict(p) for p in self._cache.kind(PODS).owned(str(uid)))

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

    def _message(self, job: JsonDict) -> str | None:
        """The termination message a finished Job's pod left (kept per Job uid once read)."""
        if not job_finished(job):
            return None
        meta = job.get("metadata") or {}
        uid = str(meta.get("uid") or meta.get("name"))
        message = self._messages.get(uid)
        if message is None:
            pods = self._cache.kind(PODS).owned(str(meta.get("uid"))) if meta.get("uid") else []
            message = termination_message(pods, meta.get("uid"))
            if message is not None:
                self._messages[uid] = message
        return message


async def _none() -> None:
    return None


async def _no_read() -> StoreRead:
    return StoreRead()


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _component(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT, ""))


def _app(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_NAME, ""))


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")
