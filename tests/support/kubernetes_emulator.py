"""kmock's KubernetesEmulator as the API server of the operator tests.

kmock keeps objects as plain JSON: it never sets resourceVersion/uid/generation/creationTimestamp,
ignores label selectors, has no garbage collector and does not enforce subresources. `Cluster`
writes through HTTP (so watches see every change) and fills in what a real API server would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import kmock
import kopf

from modelops_operator.api import GROUP, PLURAL, VERSION
from modelops_operator.handlers import LoginSource, Operator, OperatorOptions, build
from modelops_operator.k8s import resources as r
from modelops_operator.main import watched_namespaces
from modelops_operator.render.common import LABEL_DEPLOYMENT, LABEL_MANAGED_BY, MANAGED_BY
from tests.support.apiserver_rules import SCALE, STATUS

T = TypeVar("T")
Obj = dict[str, Any]
MD = f"{GROUP}/{VERSION}/{PLURAL}"
TEST_AGENT = "modelops-tests"
OPERATOR_AGENT = "modelops-operator"
ALL_VERBS = ["get", "list", "watch", "create", "patch", "delete"]


def declare_resources(api: kmock.KubernetesEmulator) -> None:
    """Every resource the operator and kopf touch, with verbs (kmock declares none by default)."""
    for res in r.ALL:
        subresources = [
            name for name, kinds in (("status", STATUS), ("scale", SCALE)) if res.plural in kinds
        ]
        api.resources[
            f"{res.group}/{res.version}/{res.plural}" if res.group else f"v1/{res.plural}"
        ] = {
            "namespaced": res.namespaced,
            "kind": res.kind,
            "singular": res.kind.lower(),
            "verbs": ALL_VERBS,
            "shortnames": ["md"] if res is r.MODELDEPLOYMENTS else [],
            "categories": [],
            "subresources": subresources,
        }


def rbac_call(request: kmock.Request) -> tuple[str, str, str] | None:
    """(apiGroup, resource[/subresource], verb) of one API request; None for discovery URLs."""
    res = request.resource
    if res is None or not isinstance(res.plural, str) or not res.plural:
        return None
    method = str(
        request.method.value if hasattr(request.method, "value") else request.method
    ).upper()
    if method == "GET":
        verb = (
            "watch" if request.params.get("watch") == "true" else "get" if request.name else "list"
        )
    else:
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
        if verb == "delete" and not request.name:
            verb = "deletecollection"
    resource = f"{res.plural}/{request.subresource}" if request.subresource else res.plural
    return (str(res.group or ""), resource, verb)


def _agent(request: kmock.Request) -> str:
    return str(request.headers.get("User-Agent", ""))


class Cluster:
    """Test-side writes and reads against the emulator, as a real API server would answer them."""

    def __init__(self, api: kmock.KubernetesEmulator) -> None:
        self.api = api
        self._versions = itertools.count(1)
        # kmock reads /api/v1/namespaces as a namespace prefix and cannot store Namespace
        # objects: the namespaces that exist are kept here (chart_cluster.py creates them).
        self.namespaces: dict[str, Obj] = {}

    # --- request log ------------------------------------------------------------------------
    def requests(self) -> list[kmock.Request]:
        """Every request the API server saw except the test's own."""
        return [q for q in self.api if not _agent(q).startswith(TEST_AGENT)]

    def posts(self, plural: str, prefix: str = "") -> int:
        """How many creates the operator sent for a resource (of names starting with prefix)."""
        return sum(1 for name in self.created(plural) if name.startswith(prefix))

    def created(self, plural: str) -> list[str]:
        """The names the operator sent creates for, in order (a name twice: created twice)."""
        names = []
        for q in self.api:
            call = rbac_call(q)
            mine = _agent(q).startswith(OPERATOR_AGENT) and call is not None
            if mine and call is not None and call[1:] == (plural, "create"):
                body = q.data if isinstance(q.data, dict) else {}
                names.append(str((body.get("metadata") or {}).get("name", "")))
        return names

    def calls(self) -> Counter[tuple[str, str, str]]:
        """RBAC calls of the operator and kopf, counted."""
        return Counter(c for q in self.requests() if (c := rbac_call(q)) is not None)

    # --- HTTP writes (watchers see them) ----------------------------------------------------
    async def _send(self, method: str, path: str, body: Any = None) -> Obj:
        headers = {"User-Agent": TEST_AGENT}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        resp = await self.api.request(method, path, json=body, headers=headers)
        async with resp:
            data = await resp.json(content_type=None)
            assert resp.status < 300, f"{method} {path}: {resp.status} {data}"
            return data if isinstance(data, dict) else {}

    def _meta(self, name: str, namespace: str, **extra: Any) -> Obj:
        return {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": str(next(self._versions)),
            "generation": 1,
            "creationTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **extra,
        }

    async def create_md(
        self, name: str, spec: Obj, namespace: str = "default", **metadata: Any
    ) -> Obj:
        """POST a ModelDeployment with the metadata a real API server would add (and any
        other metadata given: finalizers, annotations)."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "metadata": self._meta(name, namespace, **metadata),
            "spec": spec,
        }
        return await self._send("POST", r.MODELDEPLOYMENTS.path(namespace), body)

    async def update_spec(self, name: str, spec_patch: Obj, namespace: str = "default") -> Obj:
        """Merge-patch the spec (the API server bumps metadata.generation)."""
        path = r.MODELDEPLOYMENTS.path(namespace, name)
        return await self._send("PATCH", path, {"spec": spec_patch})

    async def delete_md(self, name: str, namespace: str = "default") -> None:
        """DELETE a ModelDeployment (a finalizer, if any, holds it until removed)."""
        await self._send("DELETE", r.MODELDEPLOYMENTS.path(namespace, name))

    async def delete(self, res: r.Resource, name: str, namespace: str = "default") -> None:
        """What a controller (or kubectl) deletes: a pod of a scaled-down ReplicaSet."""
        await self._send("DELETE", res.path(namespace, name))

    async def patch_status(
        self, res: r.Resource, name: str, status: Obj, namespace: str = "default"
    ) -> Obj:
        """What a controller (Job, Deployment) would write into a child's status."""
        return await self._send("PATCH", res.path(namespace, name, "status"), {"status": status})

    async def finish_job(
        self, name: str, summary: Obj | str, ok: bool = True, namespace: str = "default"
    ) -> Obj:
        """A Job's end as the cluster shows it: its pod terminated with the summary as its
        container's termination message (the kubelet's), then the Job controller's status."""
        message = (
            summary if isinstance(summary, str) else json.dumps(summary, separators=(",", ":"))
        )
        await self.job_pod(name, message, ok=ok, namespace=namespace)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        cond = "Complete" if ok else "Failed"
        status = {
            "succeeded" if ok else "failed": 1,
            "active": 0,
            "conditions": [{"type": cond, "status": "True", "lastTransitionTime": now}],
            "completionTime": now,
        }
        return await self.patch_status(r.JOBS, name, status, namespace)

    async def job_pod(
        self, job_name: str, message: str, *, ok: bool = True, namespace: str = "default"
    ) -> Obj:
        """The pod a Job made (its template's labels, the Job as controller owner), terminated
        with `message` as its last container's termination message."""
        job = self.get(r.JOBS, job_name, namespace)
        assert job is not None, f"no Job {job_name}"
        template = job["spec"]["template"]
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": job_name,
            "uid": job["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{job_name}-{uuid.uuid4().hex[:5]}",
                "namespace": namespace,
                "labels": dict(template.get("metadata", {}).get("labels") or {}),
                "ownerReferences": [owner],
            },
            "spec": template["spec"],
        }
        created = await self._send("POST", r.PODS.path(namespace), pod)
        containers = template["spec"]["containers"]
        statuses = [
            {
                "name": c["name"],
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 0 if ok else 1,
                        "reason": "Completed" if ok else "Error",
                        "finishedAt": now,
                        **({"message": message} if i == len(containers) - 1 else {}),
                    }
                },
            }
            for i, c in enumerate(containers)
        ]
        status = {"phase": "Succeeded" if ok else "Failed", "containerStatuses": statuses}
        name = created["metadata"]["name"]
        return await self.patch_status(r.PODS, name, status, namespace)

    async def ready_deployment(self, name: str, namespace: str = "default") -> Obj:
        """The Deployment controller's status once every replica is up to date and ready."""
        dep = self.get(r.DEPLOYMENTS, name, namespace)
        assert dep is not None, f"no Deployment {name}"
        n = int(dep["spec"].get("replicas", 1))
        status = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": n,
            "updatedReplicas": n,
            "readyReplicas": n,
            "availableReplicas": n,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        return await self.patch_status(r.DEPLOYMENTS, name, status, namespace)

    async def add_pod(
        self,
        deployment: str,
        ip: str,
        *,
        ready: bool = True,
        index: int = 0,
        namespace: str = "default",
    ) -> Obj:
        """A running pod of a Deployment at `ip`, made by its ReplicaSet as a real one is."""
        dep = self.get(r.DEPLOYMENTS, deployment, namespace)
        assert dep is not None, f"no Deployment {deployment}"
        labels = dict(dep["spec"]["selector"].get("matchLabels") or {})
        labels |= dict(dep["spec"]["template"]["metadata"].get("labels") or {})
        labels.setdefault(LABEL_MANAGED_BY, MANAGED_BY)
        labels.setdefault(LABEL_DEPLOYMENT, dep["metadata"]["labels"][LABEL_DEPLOYMENT])
        labels["pod-template-hash"] = "5f7c9b"
        owner = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": f"{deployment}-5f7c9b",
            "uid": str(uuid.uuid4()),
            "controller": True,
        }
        flag = "True" if ready else "False"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": self._meta(
                f"{deployment}-{index}", namespace, labels=labels, ownerReferences=[owner]
            ),
            "spec": dep["spec"]["template"]["spec"],
        }
        await self._send("POST", r.PODS.path(namespace), body)
        status = {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {"type": "Ready", "status": flag, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {"name": c["name"], "ready": ready, "restartCount": 0, "state": {"running": {}}}
                for c in dep["spec"]["template"]["spec"]["containers"]
            ],
        }
        return await self.patch_status(r.PODS, f"{deployment}-{index}", status, namespace)

    async def finish_validation(
        self, name: str, ok: bool = True, message: str = "", namespace: str = "default"
    ) -> Obj:
        """A validation Job's end, with the summary its pod leaves (no Triton involved)."""
        from modelops_contract.validation import ValidationSummary

        summary = ValidationSummary(
            ok=ok,
            samples=8,
            pods=1,
            max_abs_error=0.0 if ok else 0.5,
            reason=None if ok else "ValidationFailed",
            message=message or None,
        )
        return await self.finish_job(
            name, json.loads(summary.to_line()), ok=ok, namespace=namespace
        )

    # --- reads (straight from the emulator's memory) ----------------------------------------
    def get(self, res: r.Resource, name: str, namespace: str = "default") -> Obj | None:
        """One stored object, or None (kmock's `in` is always False: index it directly)."""
        key = f"{res.group}/{res.version}/{res.plural}" if res.group else f"v1/{res.plural}"
        try:
            obj = self.api.objects[key, namespace, name]
        except KeyError:
            return None
        return None if obj.deleted else obj.last.raw

    def names(self, res: r.Resource, namespace: str = "default") -> list[str]:
        """Names of the live objects of a resource in a namespace."""
        out = []
        for (resource, ns, name), obj in self.api.objects.items():
            same = resource.plural == res.plural and resource.group == res.group
            if same and ns == namespace and not obj.deleted:
                out.append(name)
        return sorted(out)

    def md(self, name: str, namespace: str = "default") -> Obj:
        """The ModelDeployment as stored."""
        obj = self.get(r.MODELDEPLOYMENTS, name, namespace)
        assert obj is not None, f"no ModelDeployment {name}"
        return obj

    def events(self, name: str) -> list[Obj]:
        """Events the operator posted about a ModelDeployment, oldest first."""
        found = [
            e
            for n in self.names(r.EVENTS)
            if (e := self.get(r.EVENTS, n)) is not None
            and e.get("involvedObject", {}).get("name") == name
        ]
        return sorted(found, key=lambda e: e["metadata"]["name"])


async def eventually(
    probe: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    within: float = 10.0,
    what: str = "condition",
) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    last: Any = None
    while True:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last  # type: ignore[no-any-return]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.02)


def only(items: Iterable[T]) -> T:
    """The single item of an iterable."""
    found = list(items)
    assert len(found) == 1, f"expected exactly one, got {found}"
    return found[0]


def emulator_login(url: str) -> LoginSource:
    """A kopf login to the emulator at `url` (production logs in with kopf's own logins)."""
    server = url.rstrip("/")

    async def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=server, insecure=True)

    return login


def stream_initial_events(registry: kopf.OperatorRegistry) -> None:
    """Make kopf WATCH with sendInitialEvents instead of LIST-then-WATCH (Kubernetes 1.34's
    streaming lists; production keeps kopf's default)."""

    @kopf.on.startup(registry=registry, id="test-initial-streaming")
    async def streaming(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.initial_streaming = True


@contextlib.asynccontextmanager
async def operator_in_thread(
    options: OperatorOptions, *, initial_streaming: bool = False, namespaced: bool = False
) -> AsyncIterator[Operator]:
    """The whole kopf operator in its own thread and event loop, stopped and checked on exit.
    `namespaced`: it watches its settings' namespaces as `modelops operator` does (kopf then
    lists and watches Namespaces: see tests/support/namespace_watch.py), else the cluster.

    kopf cancels every task born during its lifetime when it stops, which in the caller's loop
    would be the caller itself (KopfRunner uses a thread for the same reason).
    """
    registry, op = build(options)
    if initial_streaming:
        stream_initial_events(registry)
    namespaces = watched_namespaces(options.settings) if namespaced else []
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    clusterwide=not namespaces,
                    namespaces=namespaces,
                    stop_flag=stop,
                    ready_flag=ready,
                )
            )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="operator", daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 10), "the operator did not start"
        yield op
    finally:
        stop.set()
        # Done once its cleanup ran: kopf then waits 5 s for "hung" tasks (a timer that kmock's
        # replayed events respawned during shutdown) before the thread exits.
        await eventually(lambda: op.closed or not thread.is_alive(), 15, "operator cleanup")
        await asyncio.to_thread(thread.join, 0.5)
        assert not errors, f"the operator failed: {errors!r}"
