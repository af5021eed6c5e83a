"""The one Service of a ModelDeployment: every revision's ready pods share the traffic."""

from __future__ import annotations

from typing import Any

from ..api import ModelDeployment
from .common import LABEL_DEPLOYMENT, LABEL_NAME, TRITON_APP, object_meta, owner_labels
from .names import label_value, service_name
from .revision import GRPC_PORT, HTTP_PORT, METRICS_PORT

SERVICE_PORTS: tuple[tuple[str, int, str | None], ...] = (
    ("http", HTTP_PORT, "http"),
    ("grpc", GRPC_PORT, "grpc"),
    ("metrics", METRICS_PORT, "http"),
)


def service_selector(md_name: str) -> dict[str, str]:
    """Pods of every revision (never build pods: they lack the deployment label)."""
    return {LABEL_DEPLOYMENT: label_value(md_name), LABEL_NAME: TRITON_APP}


def endpoint(md_name: str, namespace: str) -> tuple[str, str]:
    """(http, grpc) in-cluster addresses of the Service."""
    host = f"{service_name(md_name)}.{namespace}.svc"
    return f"{host}:{HTTP_PORT}", f"{host}:{GRPC_PORT}"


def service_ports() -> list[dict[str, Any]]:
    """Ports 8000 (HTTP), 8001 (gRPC) and 8002 (metrics), named after what they carry."""
    ports = []
    for port_name, port, protocol in SERVICE_PORTS:
        entry: dict[str, Any] = {
            "name": port_name,
            "port": port,
            "targetPort": port_name,
            "protocol": "TCP",
        }
        if protocol == "grpc":
            # Lets service meshes and gateways balance gRPC per request, not per connection.
            entry["appProtocol"] = "grpc"
        ports.append(entry)
    return ports


def render_service(
    md: ModelDeployment,
    selector: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Service `<name>` on ports 8000, 8001 and 8002: the router's pods, or every revision's
    Triton pods (`service_selector`) when there is no router."""
    name = md.metadata.name
    labels = {LABEL_NAME: TRITON_APP, **owner_labels(name)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(md, service_name(name), labels, annotations),
        "spec": {
            "type": "ClusterIP",
            "selector": selector or service_selector(name),
            "ports": service_ports(),
        },
    }
