"""The whole ModelDeployment object as read from the API server."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .base import API_VERSION, KIND
from .spec import ModelDeploymentSpec
from .status import ModelDeploymentStatus


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta the operator reads."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    namespace: str = "default"
    uid: str | None = None
    generation: int = 1
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ModelDeployment(BaseModel):
    """A ModelDeployment: metadata, validated spec, last written status."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ModelDeployment:
        """Parse an API object; raises pydantic.ValidationError on an invalid spec."""
        return cls.model_validate(
            {
                "metadata": body.get("metadata") or {},
                "spec": body.get("spec") or {},
                "status": body.get("status") or {},
            }
        )
