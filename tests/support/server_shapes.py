"""Objects shaped like a real API server's, for the emulator (tests/support/apiserver.py).

kmock stores what a client sent. A real API server (Kubernetes 1.36) returns more, and an
operator that caches what it watches pays for all of it:

- `metadata.managedFields`: one entry per writer (field manager) and subresource, each with the
  set of fields it wrote (`fieldsV1`), often larger than the spec;
- fully defaulted specs: a Job's `backoffLimit`, `completions`, `podReplacementPolicy`, its
  selector and the controller-uid labels; every pod template's `dnsPolicy`,
  `schedulerName`, `terminationGracePeriodSeconds`, each container's `imagePullPolicy`,
  `terminationMessagePath`; a Deployment's `strategy`, `revisionHistoryLimit`,
  `progressDeadlineSeconds`; a Service's `clusterIP`, `ipFamilies`, `sessionAffinity`;
- what the controllers write: a Job's status once its pod exists, and the pod itself (the Job
  controller creates it, the scheduler binds it, the kubelet reports its status with
  conditions and container statuses), with their own managedFields.

`shape_write` is the emulator's hook (every POST and merge PATCH); `job_pod` and
`job_status` are what the Job controller and the kubelet add for a new Job.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
CONTROLLER_MANAGER = "kube-controller-manager"
KUBELET = "kubelet"
SCHEDULER = "kube-scheduler"
DEFAULT_MODE = 420  # 0644, how the API server writes a volume's defaultMode


def now() -> str:
    """A timestamp as the API server writes them."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def manager_of(user_agent: str) -> str:
    """The field manager the API server derives from a client's User-Agent (its first word)."""
    return (user_agent or "unknown").split("/", 1)[0].split(" ", 1)[0] or "unknown"


def fields_v1(value: Any) -> Obj:
    """The fieldsV1 set of a JSON value, as server-side field tracking records it."""
    if isinstance(value, dict):
        out: Obj = {}
        for key, item in value.items():
            inner = fields_v1(item)
            out[f"f:{key}"] = {".": {}, **inner} if inner else {}
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            if isinstance(item, dict):
                merge_key = {k: item[k] for k in ("name", "type", "containerPort") if k in item}
                key = "k:" + json.dumps(merge_key or {"index": index}, separators=(",", ":"))
                out[key] = {".": {}, **fields_v1(item)}
            else:
                out["v:" + json.dumps(item, separators=(",", ":"))] = {}
        return out
    return {}


def managed_entry(
    manager: str, api_version: str, written: Obj, subresource: str | None = None
) -> Obj:
    """One managedFields entry: `manager` wrote the fields of `written` (an Update)."""
    entry: Obj = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(written),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def record(
    obj: Obj, manager: str, written: Obj, subresource: str | None = None, previous: Any = None
) -> None:
    """Set `obj`'s managedFields: `previous` entries with this manager's (same subresource)
    replaced by one for what it wrote now."""
    meta = obj.setdefault("metadata", {})
    entries = [
        e
        for e in (previous if previous is not None else meta.get("managedFields")) or []
        if (e.get("manager"), e.get("subresource")) != (manager, subresource)
    ]
    owned = {k: v for k, v in written.items() if k not in ("apiVersion", "kind")}
    owned_meta = {k: v for k, v in (owned.get("metadata") or {}).items() if k in OWNED_METADATA}
    owned["metadata"] = owned_meta
    entries.append(managed_entry(manager, str(obj.get("apiVersion") or "v1"), owned, subresource))
    meta["managedFields"] = entries


OWNED_METADATA = ("labels", "annotations", "ownerReferences", "finalizers")


# --- defaulting --------------------------------------------------------------------------------
def default_container(container: Obj) -> None:
    """A container's defaults."""
    container.setdefault("imagePullPolicy", "IfNotPresent")
    container.setdefault("resources", {})
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe in container:
            spec = container[probe]
            for key, value in (
                ("failureThreshold", 3),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("timeoutSeconds", 1),
            ):
                spec.setdefault(key, value)
            if "httpGet" in spec:
                spec["httpGet"].setdefault("scheme", "HTTP")


def default_pod_spec(spec: Obj) -> None:
    """A pod spec's (or pod template's) defaults."""
    for container in (*(spec.get("initContainers") or []), *(spec.get("containers") or [])):
        default_container(container)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    if spec.get("serviceAccountName"):
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for volume in spec.get("volumes") or []:
        for kind in ("secret", "configMap"):
            if kind in volume:
                volume[kind].setdefault("defaultMode", DEFAULT_MODE)
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"].setdefault("readOnly", False)


def _template(spec: Obj) -> Obj:
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))
    return template


def default_job(job: Obj) -> None:
    """A Job's defaults, with the selector and labels the API server adds."""
    uid = job["metadata"]["uid"]
    name = job["metadata"]["name"]
    spec = job.setdefault("spec", {})
    for key, value in (
        ("backoffLimit", 6),
        ("completionMode", "NonIndexed"),
        ("completions", 1),
        ("manualSelector", False),
        ("parallelism", 1),
        ("podReplacementPolicy", "TerminatingOrFailed"),
        ("suspend", False),
    ):
        spec.setdefault(key, value)
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    labels = _template(spec)["metadata"].setdefault("labels", {})
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
    )


def default_deployment(deployment: Obj) -> None:
    """A Deployment's defaults."""
    spec = deployment.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("progressDeadlineSeconds", 600)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault(
        "strategy",
        {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
    )
    _template(spec)


def default_service(service: Obj) -> None:
    """A Service's defaults and the addresses the API server allocates."""
    spec = service.setdefault("spec", {})
    digest = hashlib.sha256(service["metadata"]["name"].encode()).digest()
    address = f"10.96.{digest[0]}.{digest[1]}"
    spec.setdefault("clusterIP", address)
    spec.setdefault("clusterIPs", [address])
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("type", "ClusterIP")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))


DEFAULTS = {
    "jobs": default_job,
    "deployments": default_deployment,
    "services": default_service,
    "pods": lambda pod: default_pod_spec(pod.setdefault("spec", {})),
}


def shape_write(plural: str, method: str, data: Obj, user_agent: str, current: Obj | None) -> None:
    """The emulator's hook, before it stores a write: on a create, the kind's defaults; on a
    create or a merge patch, the writer's managedFields entry (kept in the patch, which
    replaces the stored list)."""
    meta = data.get("metadata") or {}
    if not (meta.get("name") or meta.get("generateName")):
        return  # a review (SubjectAccessReview, TokenReview): answered, never stored
    manager = manager_of(user_agent)
    previous = ((current or {}).get("metadata") or {}).get("managedFields")
    if method == "POST":
        written = copy.deepcopy(data)
        fill = DEFAULTS.get(plural)
        if fill is not None:
            fill(data)
        data.setdefault("metadata", {}).setdefault("creationTimestamp", now())
        record(data, manager, written)
    elif method == "PATCH" and current is not None:
        subresource = "status" if set(data) <= {"status", "metadata"} and "status" in data else None
        record(data, manager, data, subresource, previous)


# --- what the controllers add ------------------------------------------------------------------
def job_status() -> Obj:
    """The Job controller's status once it created the Job's pod."""
    return {
        "active": 1,
        "ready": 0,
        "startTime": now(),
        "terminating": 0,
        "uncountedTerminatedPods": {},
    }


def job_pod(job: Obj, ip: str, node: str = "node-1") -> Obj:
    """The Job's pod as the Job controller creates it, the scheduler binds it and the kubelet
    reports it (pulling its image), with each one's managedFields."""
    meta = job["metadata"]
    template = copy.deepcopy(job["spec"]["template"])
    suffix = hashlib.sha256(meta["uid"].encode()).hexdigest()[:5]
    spec = template["spec"]
    default_pod_spec(spec)
    token = f"kube-api-access-{suffix}"
    if spec.get("automountServiceAccountToken") is not False:
        spec.setdefault("volumes", []).append(_service_account_volume(token))
        for container in spec["containers"]:
            container.setdefault("volumeMounts", []).append(
                {
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    "name": token,
                    "readOnly": True,
                }
            )
    spec.update(
        {
            "enableServiceLinks": spec.get("enableServiceLinks", True),
            "nodeName": node,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "serviceAccount": spec.get("serviceAccountName", "default"),
            "serviceAccountName": spec.get("serviceAccountName", "default"),
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": f"node.kubernetes.io/{key}",
                    "operator": "Exists",
                    "tolerationSeconds": 300,
                }
                for key in ("not-ready", "unreachable")
            ],
        }
    )
    pod_meta = {
        "name": f"{meta['name']}-{suffix}",
        "generateName": f"{meta['name']}-",
        "namespace": meta["namespace"],
        "labels": dict(template["metadata"].get("labels") or {}),
        "annotations": dict(template["metadata"].get("annotations") or {}),
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "finalizers": ["batch.kubernetes.io/job-tracking"],
    }
    pod: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}
    record(pod, CONTROLLER_MANAGER, {"metadata": pod_meta, "spec": spec})
    status = pod_status(spec, ip)
    pod["status"] = status
    record(pod, KUBELET, {"status": status}, "status")
    return pod


def pod_status(spec: Obj, ip: str) -> Obj:
    """A scheduled pod whose containers are being created, as the kubelet reports it."""
    at = now()

    def condition(kind: str, ok: bool) -> Obj:
        return {
            "type": kind,
            "status": "True" if ok else "False",
            "lastProbeTime": None,
            "lastTransitionTime": at,
            **({} if ok else {"reason": "ContainersNotReady"}),
        }

    containers = spec.get("containers") or []
    names = ", ".join(c["name"] for c in containers)
    conditions = [
        condition("PodReadyToStartContainers", True),
        condition("Initialized", True),
        condition("Ready", False),
        condition("ContainersReady", False),
        condition("PodScheduled", True),
    ]
    for item in conditions[2:4]:
        item["message"] = f"containers with unready status: [{names}]"
    return {
        "phase": "Pending",
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "volumeMounts": [
                    {**m, "recursiveReadOnly": "Disabled"} if m.get("readOnly") else dict(m)
                    for m in c.get("volumeMounts") or []
                ],
            }
            for c in containers
        ],
        "hostIP": "10.0.0.11",
        "hostIPs": [{"ip": "10.0.0.11"}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "qosClass": "Burstable",
        "startTime": at,
    }


def _service_account_volume(name: str) -> Obj:
    return {
        "name": name,
        "projected": {
            "defaultMode": DEFAULT_MODE,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }
