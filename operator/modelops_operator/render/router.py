"""PURE: the traffic router of a ModelDeployment and the Service of each revision.

The router is a Deployment of HAProxy pods, each with the router agent beside it. Its ConfigMap
holds haproxy.cfg (static per ModelDeployment) and routes.json (the newest route table, which a
pod restarted while the operator is away starts from). Every revision gets a ClusterIP Service
`<name>-r<N>` the router sends that revision's share to.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..api import ModelDeployment, RouteTable
from ..settings import Settings
from .common import (
    LABEL_COMPONENT,
    LABEL_DEPLOYMENT,
    LABEL_NAME,
    LABEL_REVISION,
    ROUTER_APP,
    container_security_context,
    object_meta,
    owner_labels,
    pod_security_context,
)
from .haproxy import ADMIN_SOCKET, AGENT_PORT, SOCKET_DIR, STATS_PORT, RouterConfig
from .haproxy import render_haproxy_config as haproxy_config
from .hold import HOLD_LUA
from .names import label_value, revision_name, router_name
from .revision import GRPC_PORT, HTTP_PORT, METRICS_PORT
from .service import service_ports
from .tokens import route_token

CONFIG_DIR = "/usr/local/etc/modelops"
# The agent's token for its own table on the operator's route feed (never in its args).
ROUTE_TOKEN_ENV = "MODELOPS_ROUTE_TOKEN"  # noqa: S105 - an environment name, not a secret
CONFIG_FILE, ROUTES_FILE, HOLD_FILE = "haproxy.cfg", "routes.json", "hold.lua"
ANNOTATION_CONFIG_HASH = "modelops.dev/router-config"
# HAProxy's soft stop lets requests in flight finish for at most this long.
HARD_STOP_SECONDS = 30
ROUTER_RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
AGENT_RESOURCES = {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}


def router_labels(md_name: str) -> dict[str, str]:
    """Labels of the router's objects and pods (never selected as Triton pods)."""
    return {LABEL_NAME: ROUTER_APP, LABEL_COMPONENT: "router", **owner_labels(md_name)}


def router_selector(md_name: str) -> dict[str, str]:
    """The router's pods."""
    return {LABEL_DEPLOYMENT: label_value(md_name), LABEL_NAME: ROUTER_APP}


def haproxy_text() -> str:
    """haproxy.cfg of every router pod."""
    config = RouterConfig(hard_stop_seconds=HARD_STOP_SECONDS, lua_file=f"{CONFIG_DIR}/{HOLD_FILE}")
    return haproxy_config(config)


def render_router_configmap(md: ModelDeployment, table: RouteTable) -> dict[str, Any]:
    """ConfigMap `<name>-router`: haproxy.cfg and the newest route table."""
    name = md.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(md, router_name(name), router_labels(name)),
        "data": {
            CONFIG_FILE: haproxy_text(),
            HOLD_FILE: HOLD_LUA,
            ROUTES_FILE: table.model_dump_json(by_alias=True),
        },
    }


def _pre_stop(drain_seconds: int) -> dict[str, Any]:
    # Stay in the Service until every node dropped this pod, then soft-stop HAProxy (it closes
    # idle keep-alive connections, tells HTTP/2 clients GOAWAY, finishes requests in flight),
    # and wait for it: the kubelet's stop signal then has nothing left to cut.
    script = f"sleep {drain_seconds}; kill -USR1 1; while kill -0 1 2>/dev/null; do sleep 1; done"
    return {"preStop": {"exec": {"command": ["/bin/sh", "-c", script]}}}


def _agent_args(md: ModelDeployment, settings: Settings) -> list[str]:
    args = [
        "router-agent",
        "--socket",
        ADMIN_SOCKET,
        "--boot",
        f"{CONFIG_DIR}/{ROUTES_FILE}",
        "--port",
        str(AGENT_PORT),
    ]
    if settings.routes_url:
        base = settings.routes_url.rstrip("/")
        args += ["--routes", f"{base}/routes/{md.metadata.namespace}/{md.metadata.name}"]
    return args


def _agent_env(md: ModelDeployment, settings: Settings) -> list[dict[str, str]]:
    if not settings.routes_url:
        return []
    token = route_token(settings, md.metadata.namespace, md.metadata.name)
    return [{"name": ROUTE_TOKEN_ENV, "value": token}]


def render_router_deployment(md: ModelDeployment, settings: Settings) -> dict[str, Any]:
    """Deployment `<name>-router`: HAProxy and its agent, restarted when haproxy.cfg changes."""
    name = md.metadata.name
    labels = router_labels(name)
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "run", "mountPath": SOCKET_DIR},
    ]
    haproxy = {
        "name": "haproxy",
        "image": settings.router_image,
        "command": ["haproxy", "-W", "-db", "-f", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": "stats", "containerPort": STATS_PORT, "protocol": "TCP"},
        ],
        # Checked every second: a new router pod takes clients (and a first deploy is Ready)
        # within a second of HAProxy listening.
        "readinessProbe": _http_probe("/healthz", "stats", period=1),
        "livenessProbe": _http_probe("/healthz", "stats", failures=6),
        "lifecycle": _pre_stop(settings.drain_seconds),
        "resources": ROUTER_RESOURCES,
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    agent = {
        "name": "agent",
        "image": settings.agent_image,
        "command": ["modelops"],
        "args": _agent_args(md, settings),
        "env": _agent_env(md, settings),
        "ports": [{"name": "agent", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        # Ready only once HAProxy runs the newest table: no client connection before that.
        "readinessProbe": _http_probe("/ready", "agent", period=1),
        "resources": AGENT_RESOURCES,
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    digest = hashlib.sha256((haproxy_text() + HOLD_LUA).encode()).hexdigest()[:16]
    pod_spec = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(fs_group=True),
        "terminationGracePeriodSeconds": settings.drain_seconds + HARD_STOP_SECONDS + 5,
        "containers": [haproxy, agent],
        "volumes": [
            {"name": "config", "configMap": {"name": router_name(name)}},
            {"name": "run", "emptyDir": {}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(md, router_name(name), labels),
        "spec": {
            "replicas": md.spec.rollout.traffic.router.replicas,
            "revisionHistoryLimit": 1,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "selector": {"matchLabels": router_selector(name)},
            "template": {
                "metadata": {"labels": labels, "annotations": {ANNOTATION_CONFIG_HASH: digest}},
                "spec": pod_spec,
            },
        },
    }


def _http_probe(path: str, port: str, period: int = 5, failures: int = 3) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def render_revision_service(md: ModelDeployment, revision: int) -> dict[str, Any]:
    """Service `<name>-r<N>`: the pods of one revision, on the three Triton ports."""
    name = md.metadata.name
    labels = {**owner_labels(name), LABEL_REVISION: str(revision)}
    selector = {LABEL_DEPLOYMENT: label_value(name), LABEL_REVISION: str(revision)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(md, revision_name(name, revision), labels),
        "spec": {"type": "ClusterIP", "selector": selector, "ports": service_ports()},
    }
