"""The kubeconfig as kubectl reads it: $KUBECONFIG (files joined, the first value wins) or
~/.kube/config, a context (the current one or --context), its cluster, user and namespace.

Authentication: bearer tokens (`token`, `tokenFile`), client certificates, basic auth and exec
credential plugins (`aws eks get-token`, `gke-gcloud-auth-plugin`, ...: run as kubectl runs
them, their ExecCredential's token used). kopf's own TLS and header logic turns the result into
the operator client's credentials, so the plugin and the operator agree on both.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import yaml

from modelops_operator.k8s.client import Credentials

Obj = dict[str, Any]


class KubeconfigError(Exception):
    """The kubeconfig is missing, unreadable or names what it does not define."""


@dataclass(frozen=True)
class Target:
    """Where the commands go: the API server's credentials and the namespace to use."""

    credentials: Credentials
    namespace: str
    context: str


def _paths(explicit: str | None = None) -> list[Path]:
    if explicit:
        return [Path(explicit).expanduser()]
    joined = os.environ.get("KUBECONFIG", "")
    if joined:
        return [Path(p).expanduser() for p in joined.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def _merged(paths: list[Path]) -> tuple[str | None, dict[str, Obj], dict[str, Obj], dict[str, Obj]]:
    current: str | None = None
    contexts: dict[str, Obj] = {}
    clusters: dict[str, Obj] = {}
    users: dict[str, Obj] = {}
    found = False
    for path in paths:
        if not path.is_file():
            continue
        found = True
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise KubeconfigError(f"{path}: {exc}") from exc
        current = current or config.get("current-context") or None
        for kind, into in (("context", contexts), ("cluster", clusters), ("user", users)):
            for item in config.get(f"{kind}s") or []:
                into.setdefault(str(item.get("name")), item.get(kind) or {})
    if not found:
        where = os.pathsep.join(str(p) for p in paths)
        raise KubeconfigError(f"no kubeconfig at {where}: set KUBECONFIG or run kubectl config")
    return current, contexts, clusters, users


def exec_token(spec: Obj, cluster_server: str) -> str:
    """Run an exec credential plugin and return its token (client certificates from exec
    plugins are not supported: the error says so)."""
    command = [str(spec["command"]), *[str(a) for a in spec.get("args") or []]]
    env = {**os.environ, **{str(e["name"]): str(e["value"]) for e in spec.get("env") or []}}
    info = {
        "apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"),
        "kind": "ExecCredential",
        "spec": {"interactive": False, "cluster": {"server": cluster_server}},
    }
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KubeconfigError(f"exec credential plugin {command[0]}: {exc}") from exc
    if done.returncode != 0:
        raise KubeconfigError(f"exec credential plugin {command[0]}: {done.stderr.strip()}")
    try:
        token = (json.loads(done.stdout).get("status") or {}).get("token")
    except ValueError as exc:
        raise KubeconfigError(f"exec credential plugin {command[0]}: not JSON") from exc
    if not token:
        raise KubeconfigError(f"exec credential plugin {command[0]} returned no token")
    return str(token)


def load_target(
    context: str | None = None, namespace: str | None = None, kubeconfig: str | None = None
) -> Target:
    """The credentials and namespace of `context` (default: the current context); `namespace`
    overrides the context's, which defaults to "default" as in kubectl; `kubeconfig` (a file)
    replaces $KUBECONFIG."""
    current, contexts, clusters, users = _merged(_paths(kubeconfig))
    name = context or current
    if not name:
        raise KubeconfigError(
            "no current context: pass --context or run kubectl config use-context"
        )
    if name not in contexts:
        raise KubeconfigError(f"context {name!r} is not in the kubeconfig ({', '.join(contexts)})")
    ctx = contexts[name]
    cluster = clusters.get(str(ctx.get("cluster")))
    if cluster is None or not cluster.get("server"):
        raise KubeconfigError(f"context {name!r} names cluster {ctx.get('cluster')!r}, not defined")
    user = users.get(str(ctx.get("user")), {})
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(str(user["tokenFile"])).expanduser().read_text().strip()
    if not token and user.get("exec"):
        token = exec_token(user["exec"], str(cluster["server"]))
    info = kopf.ConnectionInfo(
        server=str(cluster["server"]),
        ca_path=cluster.get("certificate-authority"),
        ca_data=cluster.get("certificate-authority-data"),
        insecure=cluster.get("insecure-skip-tls-verify"),
        certificate_path=user.get("client-certificate"),
        certificate_data=user.get("client-certificate-data"),
        private_key_path=user.get("client-key"),
        private_key_data=user.get("client-key-data"),
        username=user.get("username"),
        password=user.get("password"),
        token=token,
        default_namespace=ctx.get("namespace"),
    )
    chosen = namespace or ctx.get("namespace") or "default"
    return Target(Credentials.from_connection_info(info), str(chosen), name)
