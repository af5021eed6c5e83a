"""`modelops doctor`: check an installed release and say what is wrong and how to fix it.

It reads the release's operator Deployment (its env is the install's configuration), then
checks: the CRD against this modelops's, each watched namespace, the operator's RBAC there
(SubjectAccessReviews for its ServiceAccount), the engine server and the store claim, whether
NetworkPolicies let each watched namespace reach the engine server, the store key Secret, the
images (well-formed references; no modelops pod failing to pull one), and whether the network
plugin enforces NetworkPolicies at all (doctor_cni.py). Exit 1 when a check fails. It needs
the rights of an administrator of the install (create subjectaccessreviews).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from modelops_operator.api.crd import build_crd
from modelops_operator.k8s.client import Credentials, KubeClient
from modelops_operator.k8s.errors import ApiError, NotFoundError
from modelops_operator.k8s.permissions import CLUSTER_SCOPED, REQUIRED_RULES, grants
from modelops_operator.k8s.resources import CRDS, DEPLOYMENTS, NAMESPACES, PODS, SERVICES, Resource

from .doctor_checks import (
    Finding,
    Grant,
    crd_finding,
    engine_server_findings,
    image_findings,
    namespace_findings,
    rbac_finding,
    reach_finding,
    traffic_allowed,
    version_findings,
)
from .doctor_cni import PLUGIN_NAMESPACES, cni_finding

SAR = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False)
SECRETS = Resource("", "v1", "secrets", "Secret")
PVCS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
POLICIES = Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet")
Obj = dict[str, Any]


@dataclass(frozen=True)
class Install:
    """What the operator Deployment's env says about the install."""

    release: str
    namespace: str
    account: str
    watched: list[str]
    store_server: str
    key_secret: str
    store_claim: str | None
    images: dict[str, str]
    app_version: str | None


def read_install(deployment: Obj, release: str, namespace: str) -> Install:
    """The install's configuration from its operator Deployment."""
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "operator")
    env = {e["name"]: e.get("value") for e in container.get("env") or [] if "value" in e}
    return Install(
        release=release,
        namespace=namespace,
        account=str(pod.get("serviceAccountName") or "default"),
        watched=[n for n in str(env.get("MODELOPS_NAMESPACES") or "").split(",") if n],
        store_server=str(env.get("MODELOPS_STORE_SERVER") or ""),
        key_secret=str(env.get("MODELOPS_STORE_KEY_SECRET") or "modelops-store-key"),
        store_claim=None if env.get("MODELOPS_STORE_URI") else env.get("MODELOPS_STORE_PVC"),
        images={
            "operator": str(container.get("image")),
            "builder": str(env.get("MODELOPS_BUILDER_IMAGE")),
            "triton": str(env.get("MODELOPS_TRITON_IMAGE")),
            "router": str(env.get("MODELOPS_ROUTER_IMAGE")),
        },
        app_version=((deployment.get("metadata") or {}).get("labels") or {}).get(
            "app.kubernetes.io/version"
        ),
    )


class Doctor:
    """Reads what the checks need through the operator's own API client."""

    def __init__(self, client: KubeClient, release: str, namespace: str) -> None:
        self.client, self.release, self.namespace = client, release, namespace

    async def get(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        try:
            return await self.client.get(res, namespace, name)
        except NotFoundError:
            return None

    async def denied(
        self, install: Install, namespace: str | None, *, cluster_scoped: bool = False
    ) -> list[Grant]:
        """The grants the operator's ServiceAccount lacks in `namespace` (None: in every
        namespace), namespaced ones, or the cluster-scoped ones."""
        user = f"system:serviceaccount:{install.namespace}:{install.account}"
        wanted = sorted(
            g for g in grants(REQUIRED_RULES) if ((g[0], g[1]) in CLUSTER_SCOPED) == cluster_scoped
        )

        async def review(grant: Grant) -> Grant | None:
            group, resource, verb = grant
            plural, _, sub = resource.partition("/")
            attributes = {"group": group, "resource": plural, "verb": verb}
            if sub:
                attributes["subresource"] = sub
            if namespace is not None:
                attributes["namespace"] = namespace
            body = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": user, "resourceAttributes": attributes},
            }
            answer = await self.client.create(SAR, None, body)
            return None if (answer.get("status") or {}).get("allowed") else grant

        results = await asyncio.gather(*(review(g) for g in wanted))
        return [g for g in results if g is not None]

    async def operator_deployment(self) -> Obj | None:
        labels = {
            "app.kubernetes.io/instance": self.release,
            "app.kubernetes.io/component": "operator",
        }
        found = await self.client.list(DEPLOYMENTS, self.namespace, labels)
        return found[0] if found else None

    async def reach(
        self, install: Install, watched: str, server_labels: Mapping[str, str]
    ) -> Finding:
        host = urlsplit(install.store_server)
        port = (host.port or 80, "http")
        labels: dict[str, dict[str, str]] = {}
        for name in {watched, install.namespace}:
            ns = await self.get(NAMESPACES, None, name) or {}
            labels[name] = {
                "kubernetes.io/metadata.name": name,
                **((ns.get("metadata") or {}).get("labels") or {}),
            }
        server_side = await self.client.list(POLICIES, install.namespace)
        tenant_side = await self.client.list(POLICIES, watched)
        verdicts_in, verdicts_out = [], []
        for app in ("triton", "modelops-source", "modelops-validator"):
            pod = {"app.kubernetes.io/name": app, "app.kubernetes.io/managed-by": "modelops"}
            verdicts_in.append(
                traffic_allowed(
                    server_side, "Ingress", (install.namespace, server_labels),
                    (watched, pod), port, labels,
                )
            )  # fmt: skip
            verdicts_out.append(
                traffic_allowed(
                    tenant_side, "Egress", (watched, pod),
                    (install.namespace, server_labels), port, labels,
                )
            )  # fmt: skip
        return reach_finding(watched, _all(verdicts_in), _all(verdicts_out), install.store_server)

    async def examine(self) -> list[Finding]:
        """Every check, in the order a person would fix them."""
        deployment = await self.operator_deployment()
        if deployment is None:
            fix = f"helm install {self.release} charts/modelops -n {self.namespace}"
            where = f"{self.namespace}/{self.release}"
            return [Finding("install", where, "fail", "no modelops operator Deployment", fix)]
        install = read_install(deployment, self.release, self.namespace)
        expected = build_crd()
        found_crd = await self.get(CRDS, None, expected["metadata"]["name"])
        findings = [crd_finding(found_crd, expected, self.release, self.namespace)]
        watched = install.watched or []
        existing = {n: await self.get(NAMESPACES, None, n) for n in watched}
        findings += namespace_findings(watched, existing)
        # Namespaced rules where the operator works (every namespace when cluster-wide), and
        # the cluster-scoped ones kopf needs anyway.
        scopes: list[str | None] = [None]
        if watched:
            scopes = [*sorted({*watched, install.namespace})]
        for scope in scopes:
            lacking = await self.denied(install, scope)
            findings.append(
                rbac_finding(scope or "every namespace", install.account, lacking, self.release)
            )
        lacking = await self.denied(install, None, cluster_scoped=True)
        findings.append(rbac_finding("cluster", install.account, lacking, self.release))
        # http://<service>.<namespace>.svc:<port>: the chart names the Deployment alike.
        server_name = (urlsplit(install.store_server).hostname or "").split(".")[0]
        server = await self.get(DEPLOYMENTS, install.namespace, server_name)
        service = await self.get(SERVICES, install.namespace, server_name)
        claim = None
        if install.store_claim:
            claim = await self.get(PVCS, install.namespace, install.store_claim)
        findings += engine_server_findings(server, service, claim, install.store_claim)
        secret = await self.get(SECRETS, install.namespace, install.key_secret)
        findings.append(
            Finding("store key", install.key_secret, "ok", "present")
            if secret is not None
            else Finding(
                "store key", install.key_secret, "fail", "the Secret is missing",
                "helm upgrade (the chart creates it), or create it with keys mac and transfer",
            )
        )  # fmt: skip
        template = ((server or {}).get("spec") or {}).get("template") or {}
        server_labels = (template.get("metadata") or {}).get("labels") or {}
        for name in watched:
            if existing.get(name) is not None:
                findings.append(await self.reach(install, name, server_labels))
        pods: list[Obj] = []
        for name in sorted({*watched, install.namespace}):
            pods += await self.client.list(PODS, name, {"app.kubernetes.io/managed-by": "modelops"})
            if name == install.namespace:
                pods += await self.client.list(
                    PODS, name, {"app.kubernetes.io/instance": self.release}
                )
        findings += image_findings(install.images, pods)
        findings += version_findings(install.images, install.app_version)
        findings.append(cni_finding(await self.plugin_daemonsets()))
        return findings

    async def plugin_daemonsets(self) -> list[Obj] | None:
        """The DaemonSets of the namespaces network plugins live in (None: not readable)."""
        found: list[Obj] = []
        for name in PLUGIN_NAMESPACES:
            try:
                found += await self.client.list(DAEMONSETS, name)
            except NotFoundError:
                continue
            except ApiError:
                return None
        return found


def _all(verdicts: list[bool | None]) -> bool | None:
    if any(v is False for v in verdicts):
        return False
    return None if any(v is None for v in verdicts) else True


def render(findings: list[Finding], release: str, namespace: str, console: Console) -> int:
    """The table, and the exit code: 1 when a check failed."""
    table = Table(title=f"modelops doctor: release {release} in {namespace}")
    for column in ("check", "where", "result", "what / how to fix"):
        table.add_column(column)
    style = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
    for f in findings:
        text = f.detail + (f"\n[bold]fix:[/] {f.fix}" if f.fix and f.level != "ok" else "")
        table.add_row(f.check, f.where, style[f.level], text)
    console.print(table)
    failed = sum(f.level == "fail" for f in findings)
    console.print(f"{failed} check(s) failed" if failed else "every check passed")
    return 1 if failed else 0


async def diagnose(credentials: Credentials, release: str, namespace: str) -> list[Finding]:
    """Run every check against the cluster the credentials reach."""

    async def connect() -> Credentials:
        return credentials

    client = KubeClient(connect, retries=2, user_agent="modelops-doctor")
    try:
        return await Doctor(client, release, namespace).examine()
    except ApiError as exc:
        fix = "run doctor as an administrator of the install (it reads RBAC and Secrets)"
        return [Finding("access", namespace, "fail", str(exc), fix)]
    finally:
        await client.close()


def run_doctor(
    release: str,
    namespace: str,
    server: str | None,
    console: Console | None = None,
    context: str | None = None,
) -> int:
    """Entry point of `modelops doctor`: a plain `server` URL (`kubectl proxy`), a kubeconfig
    context, or kopf's login (the current context, else in-cluster credentials)."""
    if server:
        credentials = Credentials(server=server.rstrip("/"))
    elif context:
        from .kubeconfig import KubeconfigError, load_target

        try:
            credentials = load_target(context).credentials
        except KubeconfigError as exc:
            (console or Console()).print(f"[red]{exc}[/]")
            return 2
    else:
        import kopf

        settings = kopf.OperatorSettings()
        info = kopf.login_with_kubeconfig(settings=settings) or kopf.login_with_service_account(
            settings=settings
        )
        if info is None:
            (console or Console()).print("[red]no kubeconfig and no in-cluster credentials[/]")
            return 2
        credentials = Credentials.from_connection_info(info)
    findings = asyncio.run(diagnose(credentials, release, namespace))
    return render(findings, release, namespace, console or Console())
