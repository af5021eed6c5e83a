"""PURE: the HTTPRoute and GRPCRoute of a ModelDeployment in GatewayAPI traffic mode.

The cluster's gateway splits requests by the backendRefs' weights; each revision's Service is
one backendRef. A weight of 0 sends that revision nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api import GatewayApiSpec, ModelDeployment
from .common import object_meta, owner_labels
from .names import revision_name, service_name
from .revision import GRPC_PORT, HTTP_PORT

GATEWAY_API = "gateway.networking.k8s.io/v1"


def _parents(spec: GatewayApiSpec) -> list[dict[str, Any]]:
    return [ref.to_wire() for ref in spec.parent_refs]


def render_routes(
    md: ModelDeployment, spec: GatewayApiSpec, weights: Mapping[int, int]
) -> list[dict[str, Any]]:
    """[HTTPRoute, GRPCRoute] named after the ModelDeployment's Service."""
    name = md.metadata.name
    routes = []
    for kind, port in (("HTTPRoute", HTTP_PORT), ("GRPCRoute", GRPC_PORT)):
        backends = [
            {"name": revision_name(name, revision), "port": port, "weight": weight}
            for revision, weight in sorted(weights.items())
        ]
        route_spec: dict[str, Any] = {
            "parentRefs": _parents(spec),
            "rules": [{"backendRefs": backends}],
        }
        if spec.hostnames:
            route_spec["hostnames"] = list(spec.hostnames)
        routes.append(
            {
                "apiVersion": GATEWAY_API,
                "kind": kind,
                "metadata": object_meta(md, service_name(name), owner_labels(name)),
                "spec": route_spec,
            }
        )
    return routes
