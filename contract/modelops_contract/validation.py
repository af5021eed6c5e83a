"""The validation run: a candidate revision's pods answer a known set before any client does.

Every store entry holds `validation.npz` beside `engine.json`: inputs the builder made and the
fp32 reference outputs, as arrays named `input.<name>` and `output.<name>` (batch first). A
user's own set (spec.validation) holds one array per input name and either `labels` (an integer
class per sample, for minAccuracy) or one array per output name (for minAgreement).
"""

from __future__ import annotations

from pydantic import Field

from .termination import parse_termination, termination_line
from .wire import WireModel

VALIDATION_SET_NAME = "validation.npz"
INPUT_PREFIX, OUTPUT_PREFIX = "input.", "output."
LABELS = "labels"


class UserValidationSet(WireModel):
    """spec.validation as the validation Job needs it."""

    source_uri: str = Field(max_length=2048)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_agreement: float | None = Field(default=None, ge=0, le=1)


class ValidationRequest(WireModel):
    """What the validation Job's `--request` argument carries."""

    model_name: str = Field(max_length=253, description="The model name Triton serves.")
    targets: list[str] = Field(
        min_length=1, max_length=256, description="host:port of each candidate pod's gRPC."
    )
    reference_set: str = Field(
        max_length=4096,
        description="The entry's validation.npz: a path, or its URL on the engine server.",
    )
    reference_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Its sha256 from the verified engine.json (required for a URL).",
    )
    reference_token: str | None = Field(
        default=None, max_length=128, description="The entry's read token (for a URL)."
    )
    inputs: list[str] = Field(min_length=1, max_length=64, description="The engine's inputs.")
    outputs: list[str] = Field(min_length=1, max_length=64, description="The engine's outputs.")
    user_set: UserValidationSet | None = None
    atol: float = Field(ge=0)
    rtol: float = Field(ge=0)
    max_batch_size: int = Field(default=8, ge=1, le=4096)
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)


class ValidationSummary(WireModel):
    """The validation Job's termination message."""

    ok: bool
    samples: int | None = Field(default=None, ge=0)
    pods: int | None = Field(default=None, ge=0)
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    accuracy: float | None = None
    agreement: float | None = None
    reason: str | None = Field(default=None, max_length=128)
    message: str | None = Field(default=None, max_length=4096)

    def to_line(self) -> str:
        """The termination message: compact JSON that fits the kubelet's limit."""
        return termination_line(self)


def parse_validation_summary(text: str) -> ValidationSummary | None:
    """The validation Job's summary, or None when the message is anything else."""
    return parse_termination(text, ValidationSummary)
