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
    owner_labels,
)
from ..render.names import router_name, service_name
from ..render.revision import PULL_CONTAINER
from .client import JsonDict, KubeClient, labels_match
from .errors import NotFoundError
from .resources import CONFIGMAPS, DEPLOYMENTS, GRPCROUTES, HTTPROUTES, JOBS, PODS, SERVICES
from .store import EngineStore, StoreRead

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
    """Reads one ModelDeployment's children; remembers build termination messages (immutable).

    `build_namespace`: where its build Jobs run (the operator's own namespace)."""

    def __init__(
        self, client: KubeClient, store: EngineStore, build_namespace: str | None = None
    ) -> None:
        self._client = client
        self._store = store
        self._build_namespace = build_namespace
        self._messages: dict[str, str] = {}

    def forget(self, job_uids: list[str]) -> None:
        """Drop cached termination messages of Jobs that are gone."""
        for uid in job_uids:
            self._messages.pop(uid, None)

    async def observe(
        self, namespace: str, name: str, uid: str | None, keys: ObserveKeys
    ) -> Observed:
        """Owned Jobs, Deployments (+ their pods), ConfigMaps, Services, routes, store entries."""
        labels = owner_labels(name)
        build_ns = self._build_namespace
        lists, builds, entries = await asyncio.gather(
            asyncio.gather(
                self._client.list(JOBS, namespace, labels),
                self._client.list(DEPLOYMENTS, namespace, labels),
                self._client.list(CONFIGMAPS, namespace, labels),
                self._client.list(SERVICES, namespace, labels),
                self._routes(namespace, labels) if keys.gateway else _empty(),
            ),
            self._client.list(JOBS, build_ns, {**labels, LABEL_OWNER_NAMESPACE: namespace})
            if build_ns
            else _empty(),
            asyncio.gather(
                self._store.read(keys.desired) if keys.desired else _no_read(),
                self._store.entry(keys.serving) if keys.serving else _none(),
            ),
        )
        desired, serving = entries
        build_jobs = _by_name([j for j in builds if built_for(j, uid) and _component(j) == "build"])
        mine = [_by_name([o for o in objs if owned_by(o, uid)]) for objs in lists]
        jobs_all, deployments_all, configmaps, services, routes = mine
        jobs = {n: j for n, j in jobs_all.items() if _component(j) != "validate"}
        validation_jobs = {n: j for n, j in jobs_all.items() if _component(j) == "validate"}
        deployments = {n: d for n, d in deployments_all.items() if _app(d) != ROUTER_APP}
        router = next((d for d in deployments_all.values() if _app(d) == ROUTER_APP), None)
        # Pods matter only once there are revisions: skip the list before the first rollout.
        pod_items = await self._client.list(PODS, namespace, labels) if deployments_all else []
        pods = {d: pods_of(dep, pod_items) for d, dep in deployments.items()}
        router_pods = pods_of(router, pod_items) if router is not None else []
        if keys.desired and await self._tamper_reports(deployments, pods):
            desired = await self._store.read(keys.desired)
        await asyncio.gather(
            *(self._attach_message(namespace, j) for j in jobs_all.values()),
            *(self._attach_message(build_ns or namespace, j) for j in build_jobs.values()),
        )
        running = [(namespace, n, j) for n, j in jobs.items() if not job_finished(j)]
        running += [
            (build_ns or namespace, n, j) for n, j in build_jobs.items() if not job_finished(j)
        ]
        job_pods = dict(await asyncio.gather(*(self._job_pods(ns, n, j) for ns, n, j in running)))
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
            routes={f"{r['kind']}/{n}": r for n, r in routes.items()},
            store_entry=desired.entry,
            serving_entry=serving,
            store_entry_digest=desired.digest,
            store_refusal=desired.refusal,
            build_jobs=build_jobs,
            job_pods=job_pods,
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

    async def _job_pods(
        self, namespace: str, name: str, job: JsonDict
    ) -> tuple[str, tuple[JsonDict, ...]]:
        """The pods a running Job made (to tell why one does not run)."""
        uid = (job.get("metadata") or {}).get("uid")
        for label in JOB_NAME_LABELS:
            pods = await self._client.list(PODS, namespace, {label: name})
            if pods:
                return name, tuple(p for p in pods if not uid or owned_by(p, uid, "Job"))
        return name, ()

    async def _routes(self, namespace: str, labels: dict[str, str]) -> list[JsonDict]:
        """HTTPRoutes and GRPCRoutes; none when the cluster has no Gateway API CRDs."""
        found: list[JsonDict] = []
        for resource in (HTTPROUTES, GRPCROUTES):
            try:
                found += [
                    {**item, "kind": resource.kind}
                    for item in await self._client.list(resource, namespace, labels)
                ]
            except NotFoundError:
                continue
        return found

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
            message = termination_message(pods, meta.get("uid"))
            if message is None:
                return
            self._messages[uid] = message
        status["terminationMessage"] = message


async def _none() -> None:
    return None


async def _no_read() -> StoreRead:
    return StoreRead()


async def _empty() -> list[JsonDict]:
    return []


def _component(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_COMPONENT, ""))


def _app(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_NAME, ""))
