"""The one table of every Kubernetes resource the operator touches, and URL building from it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from ..api import GROUP, KIND, PLURAL, VERSION


@dataclass(frozen=True)
class Resource:
    """group/version/plural of one kind, and whether its objects live in a namespace."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """`apps/v1`, or `v1` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path of the collection, an object, or one of its subresources."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{quote(name, safe='')}"
            if subresource:
                base += f"/{subresource}"
        return base


MODELDEPLOYMENTS = Resource(GROUP, VERSION, PLURAL, KIND)
JOBS = Resource("batch", "v1", "jobs", "Job")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
SERVICES = Resource("", "v1", "services", "Service")
PODS = Resource("", "v1", "pods", "Pod")
EVENTS = Resource("", "v1", "events", "Event")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")
GRPCROUTES = Resource("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
CRDS = Resource(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)

ALL: tuple[Resource, ...] = (
    MODELDEPLOYMENTS,
    JOBS,
    DEPLOYMENTS,
    CONFIGMAPS,
    SERVICES,
    PODS,
    EVENTS,
    NAMESPACES,
    CRDS,
    HTTPROUTES,
    GRPCROUTES,
    LEASES,
)
# The children the operator watches and caches (kopf's watch streams, k8s/cache.py).
CHILD_RESOURCES: tuple[Resource, ...] = (
    JOBS,
    DEPLOYMENTS,
    CONFIGMAPS,
    SERVICES,
    PODS,
    HTTPROUTES,
    GRPCROUTES,
)
_BY_KIND: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in ALL}


class UnknownResourceError(LookupError):
    """A manifest of a kind the operator has no business with (a bug in the renderer)."""


def resource_for(api_version: str, kind: str) -> Resource:
    """The table entry of an apiVersion + kind, e.g. ("apps/v1", "Deployment")."""
    try:
        return _BY_KIND[(api_version, kind)]
    except KeyError:
        raise UnknownResourceError(f"the operator does not manage {api_version} {kind}") from None
