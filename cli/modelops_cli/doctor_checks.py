"""PURE: what `modelops doctor` concludes from the objects it read. Each check returns Findings
that say what is wrong and how to fix it; nothing here talks to the cluster."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["ok", "warn", "fail"]
Obj = Mapping[str, Any]
Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# The grammar of an image reference (distribution/reference), lower-case repository.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*(?::[0-9]+)?/)"
IMAGE = re.compile(
    rf"^{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$"
)
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})


@dataclass(frozen=True)
class Finding:
    """One check's result: where, ok/warn/fail, what was found, and how to fix it."""

    check: str
    where: str
    level: Level
    detail: str
    fix: str = ""


HELM_RELEASE = "meta.helm.sh/release-name"
HELM_NAMESPACE = "meta.helm.sh/release-namespace"


def crd_owner(found: Obj) -> tuple[str, str] | None:
    """(release, namespace) of the Helm release that installed the CRD; None when it was
    applied by other means (kubectl apply -f crds/, Argo CD)."""
    annotations = (found.get("metadata") or {}).get("annotations") or {}
    release = annotations.get(HELM_RELEASE)
    return (str(release), str(annotations.get(HELM_NAMESPACE, ""))) if release else None


def crd_finding(found: Obj | None, expected: Obj, release: str, namespace: str) -> Finding:
    """The installed CRD is the one this modelops generates (same versions, same schema), and
    which release owns it (one CRD serves every release in the cluster)."""
    name = str(expected["metadata"]["name"])
    if found is None:
        return Finding(
            "CRD", name, "fail", "the CRD is not installed",
            "helm upgrade with crds.enabled=true, or kubectl apply -f crds/",
        )  # fmt: skip
    owner = crd_owner(found)
    if owner is None:
        whose = "applied outside Helm"
        upgrade = "kubectl apply -f crds/"
    elif owner == (release, namespace):
        whose = f"owned by this release ({release})"
        upgrade = f"helm upgrade {release} -n {namespace}"
    else:
        whose = f"owned by release {owner[0]} in {owner[1]} (this one has crds.enabled=false)"
        upgrade = f"helm upgrade {owner[0]} -n {owner[1]} with this chart version"
    want = {v["name"]: v.get("schema") for v in expected["spec"]["versions"]}
    have = {v["name"]: v.get("schema") for v in (found.get("spec") or {}).get("versions") or []}
    if set(want) - set(have):
        detail = f"it serves {sorted(have)}, this modelops needs {sorted(want)}; {whose}"
        return Finding("CRD", name, "fail", detail, upgrade)
    stale = sorted(v for v in want if have.get(v) != want[v])
    if stale:
        detail = f"the schema of {', '.join(stale)} differs from this modelops's; {whose}"
        return Finding("CRD", name, "fail", detail, upgrade)
    detail = f"versions {', '.join(sorted(want))}, schema current; {whose}"
    return Finding("CRD", name, "ok", detail)


def namespace_findings(names: Iterable[str], existing: Mapping[str, Obj | None]) -> list[Finding]:
    """Every watched namespace exists."""
    out = []
    for name in names:
        if existing.get(name) is None:
            fix = f"kubectl create namespace {name} (or helm upgrade with createWatchNamespaces)"
            out.append(Finding("namespace", name, "fail", "it does not exist", fix))
        else:
            out.append(Finding("namespace", name, "ok", "exists"))
    return out


def rbac_finding(where: str, account: str, denied: Sequence[Grant], release: str) -> Finding:
    """The operator's ServiceAccount may make every call it needs in `where`."""
    if not denied:
        return Finding("RBAC", where, "ok", f"{account} has every rule the operator needs")
    calls = ", ".join(f"{verb} {res}{'.' + group if group else ''}" for group, res, verb in denied)
    fix = (
        f"helm upgrade {release} with {where} in watchNamespaces (the chart adds the Role), or "
        "grant the rules of docs/install.md (Least privilege)"
    )
    return Finding("RBAC", where, "fail", f"{account} may not {calls}", fix)


def engine_server_findings(
    deployment: Obj | None, service: Obj | None, claim: Obj | None, claim_name: str | None
) -> list[Finding]:
    """The engine server runs, has its Service, and its store claim is bound."""
    out = []
    if deployment is None:
        out.append(Finding("engine server", "Deployment", "fail", "not found", "helm upgrade"))
    else:
        available = int((deployment.get("status") or {}).get("availableReplicas") or 0)
        name = deployment["metadata"]["name"]
        if available < 1:
            fix = f"kubectl describe deploy/{name}: its pod's events say why it does not run"
            out.append(Finding("engine server", name, "fail", "no replica available", fix))
        else:
            out.append(Finding("engine server", name, "ok", f"{available} replica available"))
    if service is None:
        out.append(Finding("engine server", "Service", "fail", "not found", "helm upgrade"))
    if claim_name is not None:
        phase = ((claim or {}).get("status") or {}).get("phase")
        if claim is None:
            fix = "helm upgrade with store.pvc.create=true, or create the claim"
            out.append(Finding("store", claim_name, "fail", "the store claim is missing", fix))
        elif phase != "Bound":
            fix = "its StorageClass must provide the access mode store.pvc.accessModes asks"
            out.append(Finding("store", claim_name, "fail", f"the claim is {phase}", fix))
        else:
            out.append(Finding("store", claim_name, "ok", "bound"))
    return out


def _selects(selector: Obj | None, labels: Mapping[str, str]) -> bool | None:
    """Whether a label selector matches (None: it uses expressions this check cannot read)."""
    selector = selector or {}
    if selector.get("matchExpressions"):
        return None
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _peer_ok(peer: Obj, same: str, namespaces: Mapping[str, Mapping[str, str]], other: str,
             labels: Mapping[str, str]) -> bool | None:  # fmt: skip
    if "ipBlock" in peer:
        return None
    if "namespaceSelector" in peer:
        ns = _selects(peer["namespaceSelector"], namespaces.get(other, {}))
    else:
        ns = other == same
    pods = _selects(peer.get("podSelector"), labels) if "podSelector" in peer else True
    if ns is None or pods is None:
        return None
    return ns and pods


def traffic_allowed(
    policies: Sequence[Obj],
    direction: Literal["Ingress", "Egress"],
    pod: tuple[str, Mapping[str, str]],
    peer: tuple[str, Mapping[str, str]],
    port: tuple[int, str],
    namespaces: Mapping[str, Mapping[str, str]],
) -> bool | None:
    """Whether NetworkPolicies let `pod` (namespace, labels) talk to or hear `peer` on
    `port` (number, name); None when a policy uses what this check cannot evaluate."""
    relevant = []
    for policy in policies:
        spec = policy.get("spec") or {}
        types = spec.get("policyTypes") or (
            ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
        )
        if direction in types and _selects(spec.get("podSelector"), pod[1]) is not False:
            relevant.append(spec)
    if not relevant:
        return True
    unknown = False
    for spec in relevant:
        for rule in spec.get("ingress" if direction == "Ingress" else "egress") or []:
            ports = rule.get("ports") or []
            if ports and not any(p.get("port") in port for p in ports):
                continue
            peers = rule.get("from" if direction == "Ingress" else "to")
            if not peers:
                return True
            for candidate in peers:
                verdict = _peer_ok(candidate, pod[0], namespaces, peer[0], peer[1])
                if verdict:
                    return True
                unknown |= verdict is None
    return None if unknown else False


def reach_finding(where: str, ingress: bool | None, egress: bool | None, server: str) -> Finding:
    """Can pods of `where` reach the engine server (its ingress and their egress)?"""
    if ingress and egress:
        return Finding(
            "store reachable", where, "ok", f"NetworkPolicies let its pods reach {server}"
        )
    if ingress is False or egress is False:
        side = (
            "the engine server's namespace refuses them"
            if ingress is False
            else ("their own namespace's egress policy blocks them")
        )
        fix = f"allow TCP to {server} from {where} (docs/install.md, NetworkPolicy)"
        return Finding(
            "store reachable", where, "fail", f"its pods cannot reach {server}: {side}", fix
        )
    detail = "a NetworkPolicy uses ipBlock or expressions: check by hand"
    return Finding("store reachable", where, "warn", detail)


# The images built from this repository (hack/build-images.sh); the others come from NVIDIA and
# HAProxy. The router agent runs the operator image.
PROJECT_IMAGES = ("operator", "builder")
BUILD_AND_PUSH = (
    "build it and push it to a registry the nodes can pull from: hack/build-images.sh REGISTRY "
    "(docs/install.md, Images), then helm upgrade with the --set flags it prints"
)
PULL_FIX = "check the name and tag, the registry's reach from the nodes, images.pullSecrets"


def repository(ref: str) -> str:
    """REPOSITORY of REPOSITORY[:TAG][@DIGEST] (a registry port is not a tag)."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def tag(ref: str) -> str | None:
    """TAG of REPOSITORY[:TAG][@DIGEST], None when there is none."""
    last = ref.split("@", 1)[0].rpartition("/")[2]
    return last.split(":", 1)[1] if ":" in last else None


def version_findings(images: Mapping[str, str], app_version: str | None) -> list[Finding]:
    """The project's images are the chart's appVersion: the operator's tag is it, the builder's
    is <appVersion>-ngc<YY.MM>. Another version runs code the chart's CRD and RBAC were not
    made for (a digest alone cannot be told)."""
    if not app_version:
        return [Finding("image version", "operator", "warn", "the Deployment has no appVersion")]
    out = []
    for role, wanted in (("operator", app_version), ("builder", f"{app_version}-ngc")):
        found = tag(images.get(role, ""))
        if found is None or (found == wanted if role == "operator" else found.startswith(wanted)):
            detail = f"{found or 'pinned by digest'} (chart appVersion {app_version})"
            out.append(Finding("image version", role, "ok", detail))
            continue
        detail = f"{images[role]} is not the chart's appVersion {app_version}"
        fix = (
            f"build and push version {app_version}: hack/build-images.sh REGISTRY {app_version} "
            f"(docs/install.md, Images), or leave images.{role}.tag at the chart's default"
        )
        out.append(Finding("image version", role, "warn", detail, fix))
    return out


def image_findings(images: Mapping[str, str], pods: Sequence[Obj]) -> list[Finding]:
    """Each image reference is well formed, and no pod of modelops fails to pull one; a pull
    failure of the project's own images says how to build and push them."""
    out = []
    for role, ref in sorted(images.items()):
        if not IMAGE.match(ref):
            fix = "set images.* in the chart's values to REPOSITORY[:TAG][@sha256:DIGEST]"
            out.append(Finding("image", role, "fail", f"{ref!r} is not an image reference", fix))
    ours = {repository(images[role]) for role in PROJECT_IMAGES if role in images}
    for pod in pods:
        status, meta = pod.get("status") or {}, pod.get("metadata") or {}
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in PULL_FAILURES:
                where = f"{meta.get('namespace')}/{meta.get('name')}"
                words = waiting.get("message", "")
                image = str(container.get("image", "?"))
                detail = f"{image}: {waiting['reason']}: {words}"
                fix = BUILD_AND_PUSH if repository(image) in ours else PULL_FIX
                out.append(Finding("image", where, "fail", detail.strip(), fix))
    if not any(f.level == "fail" for f in out):
        out.append(Finding("image", "all", "ok", ", ".join(sorted(images.values()))))
    return out
