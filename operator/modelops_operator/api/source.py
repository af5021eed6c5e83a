"""Where a file comes from (a model, a calibration or validation set): URI and sha256."""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, ValidationInfo, model_validator

from modelops_contract.wire import WireModel

from . import rules
from .base import DNS1123_SUBDOMAIN, cel

SHA256_PATTERN = r"^[0-9a-f]{64}$"
URI_PATTERN = r"^(https://|s3://|pvc://|file://)[^\s]+$"
# Validation context key: `modelops dev` sets it to accept file:// sources (rules.MSG_FILE_URI).
LOCAL_SOURCES = "localSources"


class Source(WireModel):
    """Where the model file comes from, and the checksum it must have."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *(rules.scheme_rule(*shape) for shape in rules.URI_SHAPES),
                cel("!self.uri.startsWith('file://')", rules.MSG_FILE_URI, ".uri"),
            ]
        }
    )

    uri: str = Field(
        max_length=2048,
        pattern=URI_PATTERN,
        description="https://HOST/PATH, s3://BUCKET/KEY, pvc://CLAIM/PATH or file:// "
        "(development only).",
    )
    sha256: str = Field(
        pattern=SHA256_PATTERN,
        min_length=64,
        max_length=64,
        description="Lowercase hex SHA-256 of the file; verified before anything parses it.",
    )
    credentials_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Secret in the same namespace whose keys reach the build Job as env only.",
    )

    @model_validator(mode="after")
    def _uri_shape(self, info: ValidationInfo) -> Source:
        for scheme, pattern, message in rules.URI_SHAPES:
            if self.uri.startswith(scheme) and not re.match(pattern, self.uri):
                raise ValueError(message)
        local_ok = bool(info.context and info.context.get(LOCAL_SOURCES))
        if self.uri.startswith("file://") and not local_ok:
            raise ValueError(rules.MSG_FILE_URI)
        return self
