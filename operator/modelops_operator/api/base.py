"""API group, version and names, and the CEL rule helper (models derive from WireModel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic.config import JsonDict

GROUP = "modelops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"

# DNS-1123 label (names of Secrets, PVCs and the like are subdomains, but a label is a safe subset
# for everything the operator derives names from).
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry; the message always names the field and the fix."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cut_to(limit: int) -> Callable[[Any], Any]:
    """A BeforeValidator for free-text status fields: longer text is cut to `limit` characters
    (ending in ...) when the status is validated, so a long message can never make the API
    server reject a status patch (and lose what the patch carried)."""

    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            return value[: limit - 3] + "..."
        return value

    return cut
