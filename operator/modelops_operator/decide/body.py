"""A ModelDeployment body as the API returned it, parsed once: valid, or invalid with why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..api import (
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ObjectMeta,
    format_validation_error,
)


@dataclass(frozen=True)
class InvalidSpec:
    """A body whose spec the models reject (the schema let it through): what status needs."""

    metadata: ObjectMeta
    status: ModelDeploymentStatus
    message: str


ParsedBody = ModelDeployment | InvalidSpec


def parse_body(body: Mapping[str, Any]) -> ParsedBody:
    """The ModelDeployment, or InvalidSpec naming the field and the fix."""
    meta = ObjectMeta.model_validate(body.get("metadata") or {})
    try:
        status = ModelDeploymentStatus.model_validate(body.get("status") or {})
    except ValidationError:
        # The status is the operator's own; an unreadable one is rebuilt, never a user error.
        status = ModelDeploymentStatus()
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return InvalidSpec(meta, status, format_validation_error(exc))
    return ModelDeployment(metadata=meta, spec=spec, status=status)
