"""The chart installed into the emulated cluster: `helm template` (the real helm) applied object
by object to kmock, as `helm install` would create them, and the operator's Settings read from
the Deployment the chart rendered, with the Secrets it created resolved the way the kubelet
resolves them. Nothing is created by hand that the chart (or a README command) does not create.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kmock
import yaml

from modelops_cli.doctor import DAEMONSETS
from modelops_cli.store_keys import store_keys
from modelops_operator.k8s import resources as r
from modelops_operator.k8s.client import Credentials
from modelops_operator.k8s.resources import Resource
from modelops_operator.settings import Settings
from tests.support.chart import CHART, Helm, Manifest
from tests.support.kubernetes_emulator import Cluster

Obj = dict[str, Any]

# What the chart creates besides the operator's own resources (k8s/resources.py).
CHART_RESOURCES = (
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
)
ALL = (*r.ALL, *CHART_RESOURCES)
BY_KIND = {(res.api_version, res.kind): res for res in ALL}
SECRETS, PVCS = CHART_RESOURCES[0], CHART_RESOURCES[2]


def declare_chart_resources(api: kmock.KubernetesEmulator) -> None:
    """Declare the chart's kinds in the emulator (it declares none by itself)."""
    for res in CHART_RESOURCES:
        key = f"{res.group}/{res.version}/{res.plural}" if res.group else f"v1/{res.plural}"
        api.resources[key] = {
            "namespaced": res.namespaced,
            "kind": res.kind,
            "singular": res.kind.lower(),
            "verbs": ["get", "list", "watch", "create", "patch", "delete"],
            "shortnames": [],
            "categories": [],
            "subresources": [],
        }


def plugin_daemonset(name: str, container: str) -> Manifest:
    """A network plugin's node agent, as its installer leaves it (what doctor looks for)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": container, "image": f"{name}:1"}]},
            },
        },
    }


def serve_daemonsets(api: kmock.KubernetesEmulator) -> None:
    """Declare apps/v1 DaemonSets in the emulator (the chart makes none; plugins do)."""
    api.resources["apps/v1/daemonsets"] = {
        "namespaced": True, "kind": "DaemonSet", "singular": "daemonset",
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
        "shortnames": [], "categories": [], "subresources": [],
    }  # fmt: skip


async def install_network_plugin(
    api: kmock.KubernetesEmulator, cluster: Cluster, name: str, container: str, namespace: str
) -> None:
    """A cluster's network plugin: DaemonSets served, and the plugin's agent in `namespace`."""
    serve_daemonsets(api)
    if namespace not in cluster.namespaces:
        await create_namespace(cluster, namespace)
    await cluster._send("POST", DAEMONSETS.path(namespace), plugin_daemonset(name, container))


class NamespaceNotFoundError(AssertionError):
    """What the API server answers for an object in a namespace that does not exist."""


@dataclass
class Installed:
    """The objects `helm install` created, by (kind, namespace, name)."""

    release: str
    namespace: str
    objects: dict[tuple[str, str | None, str], Manifest] = field(default_factory=dict)

    def find(self, kind: str, name: str, namespace: str | None = "") -> Manifest:
        """One installed object (namespace "" : the release's; None: cluster-scoped)."""
        return self.objects[(kind, self.namespace if namespace == "" else namespace, name)]

    def operator_deployment(self) -> Manifest:
        """The operator's Deployment (its container is `operator`)."""
        return next(
            m
            for (kind, _, _), m in self.objects.items()
            if kind == "Deployment"
            and m["spec"]["template"]["spec"]["containers"][0]["name"] == "operator"
        )

    def secret(self, name: str) -> dict[str, str]:
        """A created Secret's data, decoded."""
        data = self.find("Secret", name)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def secrets(self) -> dict[str, dict[str, str]]:
        """Every created Secret, decoded, by name."""
        return {name: self.secret(name) for (kind, _, name) in self.objects if kind == "Secret"}

    def operator_settings(self, **overrides: Any) -> Settings:
        """The Settings the operator pod would start with: its env as the kubelet resolves it
        (fieldRef metadata.namespace, secretKeyRef from the Secrets the chart created)."""
        container = self.operator_deployment()["spec"]["template"]["spec"]["containers"][0]
        env: dict[str, Any] = {}
        for item in container["env"]:
            source = item.get("valueFrom") or {}
            if "value" in item:
                value = item["value"]
            elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                value = self.namespace
            else:
                ref = source["secretKeyRef"]
                value = self.secret(ref["name"])[ref["key"]]
            env[item["name"].removeprefix("MODELOPS_").lower()] = value
        if env.get("namespaces") is not None:
            env["namespaces"] = [n for n in str(env["namespaces"]).split(",") if n]
        for key in ("default_triton_resources",):
            env[key] = yaml.safe_load(env[key])
        return Settings(**{**env, **overrides})


class HelmOwnershipError(AssertionError):
    """What `helm install` answers when an object it renders exists and another release (or
    no release) owns it."""


HELM_RELEASE, HELM_NAMESPACE = "meta.helm.sh/release-name", "meta.helm.sh/release-namespace"


def _helm_owned(cluster: Cluster, doc: Manifest, release: str, namespace: str) -> Manifest:
    """`doc` with the label and annotations `helm install` adds; fails as helm does when the
    object exists and is not this release's (helm adopts only its own objects)."""
    res = BY_KIND[(doc["apiVersion"], doc["kind"])]
    meta = dict(doc.get("metadata") or {})
    name = meta["name"]
    existing = cluster.get(
        res, name, (meta.get("namespace") or namespace) if res.namespaced else None
    )
    if existing is not None:
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        for key, want in ((HELM_RELEASE, release), (HELM_NAMESPACE, namespace)):
            if annotations.get(key) != want:
                raise HelmOwnershipError(
                    f'Unable to continue with install: {doc["kind"]} "{name}" in namespace '
                    f'"{meta.get("namespace", "") if res.namespaced else ""}" exists and cannot '
                    "be imported into the current release: invalid ownership metadata; "
                    f'annotation validation error: key "{key}" must equal "{want}": current '
                    f'value is "{annotations.get(key, "")}"'
                )
    meta["labels"] = {**(meta.get("labels") or {}), "app.kubernetes.io/managed-by": "Helm"}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        HELM_RELEASE: release,
        HELM_NAMESPACE: namespace,
    }
    return {**doc, "metadata": meta}


async def create(cluster: Cluster, manifest: Manifest, namespace: str | None = None) -> Obj:
    """POST one object as the API server would store it; a namespaced object needs its
    namespace to exist (as `kubectl apply -n ml` finds out on a fresh cluster). A status in
    the manifest is written after, through /status, as its controller would."""
    res = BY_KIND[(manifest["apiVersion"], manifest["kind"])]
    meta = dict(manifest.get("metadata") or {})
    if res.namespaced:
        meta["namespace"] = meta.get("namespace") or namespace or "default"
        if meta["namespace"] not in cluster.namespaces:
            raise NamespaceNotFoundError(f'namespaces "{meta["namespace"]}" not found')
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("resourceVersion", "1")
    meta.setdefault("generation", 1)
    meta.setdefault("creationTimestamp", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    body = {**manifest, "metadata": meta}
    if res is r.NAMESPACES:
        if meta["name"] in cluster.namespaces:
            raise AssertionError(f'namespaces "{meta["name"]}" already exists')
        cluster.namespaces[meta["name"]] = body
        return body
    path = res.path(meta.get("namespace"))
    created = await cluster._send("POST", path, body)
    if manifest.get("status"):  # the server drops it on create; its controller (kubelet) writes it
        status_path = res.path(meta.get("namespace"), meta["name"], "status")
        return await cluster._send("PATCH", status_path, {"status": manifest["status"]})
    return created


async def create_namespace(cluster: Cluster, name: str) -> None:
    """What `--create-namespace` (or `kubectl create namespace`) does."""
    await create(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def helm_install(
    helm: Helm, cluster: Cluster, release: str, namespace: str, *set_args: str
) -> Installed:
    """`helm install RELEASE charts/modelops -n NAMESPACE --create-namespace [--set ...]`, as
    `helm template` with the same arguments, every object created in helm's install order
    (Namespaces first); returns what was created."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for value in set_args:
        args += ["--set", value]
    result = helm.run(*args)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    order = {"Namespace": 0, "CustomResourceDefinition": 1, "Secret": 2}
    installed = Installed(release, namespace)
    if namespace not in cluster.namespaces:  # --create-namespace
        await create_namespace(cluster, namespace)
    ordered = sorted(docs, key=lambda d: order.get(d["kind"], 9))
    # helm checks every object before it creates any.
    owned = [
        _helm_owned(cluster, d, release, namespace)
        for d in ordered
        if d["kind"] != "ServiceMonitor"
    ]
    for doc in owned:
        stored = await create(cluster, doc, namespace)
        meta = stored.get("metadata") or doc["metadata"]
        res = BY_KIND[(doc["apiVersion"], doc["kind"])]
        ns = meta.get("namespace") if res.namespaced else None
        installed.objects[(doc["kind"], ns or None, meta["name"])] = stored
    secret = await run_store_keys_init(cluster, installed.operator_deployment(), namespace)
    if secret is not None:
        installed.objects[("Secret", namespace, secret["metadata"]["name"])] = secret
    return installed


async def run_store_keys_init(cluster: Cluster, deployment: Manifest, namespace: str) -> Obj | None:
    """What the operator pod's init container `store-keys` does when the kubelet starts it (the
    same code, against the emulator); the key Secret afterwards, or None without that init
    container (an existing Secret named in the values)."""
    pod = deployment["spec"]["template"]["spec"]
    init = [c for c in pod.get("initContainers") or [] if c["name"] == "store-keys"]
    if not init:
        return None
    args = init[0]["args"]
    assert args[0] == "store-keys", args
    secret_ns, secret = args[args.index("--namespace") + 1], args[args.index("--secret") + 1]
    assert secret_ns == namespace
    credentials = Credentials(server=str(cluster.api.url).rstrip("/"))
    assert await store_keys(credentials, secret_ns, secret) == 0
    return cluster.get(SECRETS, secret, secret_ns)


def missing_references(pod_spec: Manifest, namespace: str, cluster: Cluster) -> list[str]:
    """The claims and Secrets a pod names that do not exist in its namespace: the kubelet and
    the scheduler would leave it Pending (`persistentvolumeclaim "x" not found`)."""
    missing = []
    for volume in pod_spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and cluster.get(PVCS, claim, namespace) is None:
            missing.append(f'persistentvolumeclaim "{claim}" not found')
    containers = [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]
    for container in containers:
        for source in container.get("envFrom") or []:
            name = source["secretRef"]["name"]
            if cluster.get(SECRETS, name, namespace) is None:
                missing.append(f'secret "{name}" not found')
        for item in container.get("env") or []:
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if (
                ref
                and not ref.get("optional")
                and cluster.get(SECRETS, ref["name"], namespace) is None
            ):
                missing.append(f'secret "{ref["name"]}" not found')
    return sorted(set(missing))


def readme_block(readme: Path, heading: str) -> list[str]:
    """The shell commands of the first ```bash block after `heading` (continuations joined)."""
    text = readme.read_text()
    section = text[text.index(heading) :]
    block = section[
        section.index("```bash") + len("```bash") : section.index(
            "```", section.index("```bash") + 7
        )
    ]
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        line = line.split(" # ")[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        commands.append((pending + line.strip()).strip())
        pending = ""
    return commands
