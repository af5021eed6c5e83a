"""spec.serving and spec.scaling: how the engine is served and scaled (never a rebuild)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from modelops_contract.wire import WireModel

from . import rules
from .base import cel
from .enums import ScalingMetric

RESOURCE_NAME_PATTERN = r"^([a-z0-9.-]+/)?[a-z0-9A-Z._-]+$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"

ResourceName = Annotated[str, StringConstraints(max_length=128, pattern=RESOURCE_NAME_PATTERN)]
ResourceValue = (
    Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY_PATTERN)]
    | Annotated[int, Field(ge=0)]
)


class ResourceRequirements(WireModel):
    """Container resources of each Triton pod (Kubernetes quantities)."""

    limits: dict[ResourceName, ResourceValue] | None = Field(
        default=None, max_length=16, description="e.g. {cpu: 2, memory: 4Gi, nvidia.com/gpu: 1}."
    )
    requests: dict[ResourceName, ResourceValue] | None = Field(
        default=None, max_length=16, description="e.g. {cpu: 500m, memory: 2Gi}."
    )


class DynamicBatching(WireModel):
    """Triton dynamic batching."""

    max_queue_delay_microseconds: int = Field(
        default=100, ge=0, le=10_000_000, description="How long Triton waits to fill a batch."
    )


class ServingSpec(WireModel):
    """How the engine is served; changes here never rebuild the engine."""

    replicas: int = Field(default=1, ge=0, le=1000, description="Used only when scaling is absent.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Resources of each Triton container."
    )
    dynamic_batching: DynamicBatching | None = Field(
        default_factory=DynamicBatching, description="Triton dynamic batching settings."
    )
    instances_per_replica: int = Field(
        default=1, ge=1, le=16, description="Triton model instances per pod (instance_group count)."
    )


class ScalingSpec(WireModel):
    """The operator's own Triton-aware autoscaler."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.minReplicas <= self.maxReplicas", rules.MSG_MIN_MAX, ".minReplicas"),
                cel(
                    "self.metric != 'gpuUtilization' || self.target <= 100.0",
                    rules.MSG_GPU_TARGET,
                    ".target",
                ),
            ]
        }
    )

    min_replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Fewest serving pods; 0 scales to zero after idleSeconds without a request "
        "(Router mode only: the router holds the first request while a pod starts).",
    )
    max_replicas: int = Field(ge=1, le=1000, description="Most serving pods.")
    metric: ScalingMetric = Field(
        default=ScalingMetric.QUEUE_TIME, description="Which Triton figure is held at target."
    )
    # At least 0.01: a smaller target turns every figure into a ratio that overflows.
    target: float = Field(
        ge=0.01,
        le=1e9,
        description="Queue microseconds per request, inferences/s per replica, or GPU percent.",
    )
    scale_down_delay_seconds: int = Field(
        default=120, ge=0, le=3600, description="Lower recommendations must last this long."
    )
    idle_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="With minReplicas 0: no request through the router for this long scales "
        "the serving revision to 0 pods.",
    )
    # At most the router's client and server timeouts (300 s): a longer hold would be cut.
    cold_start_timeout_seconds: int = Field(
        default=120,
        ge=1,
        le=300,
        description="With minReplicas 0: how long the router holds a request while a pod "
        "starts; then 503 (HTTP) or UNAVAILABLE (gRPC) saying the model is waking up.",
    )

    @property
    def floor(self) -> int:
        """Fewest pods while awake: minReplicas, but at least 1 (only idleness reaches 0)."""
        return max(1, self.min_replicas)

    @property
    def scales_to_zero(self) -> bool:
        """minReplicas 0: idle after idleSeconds, woken by a held request."""
        return self.min_replicas == 0

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(rules.MSG_MIN_MAX)
        if self.metric == ScalingMetric.GPU_UTILIZATION and self.target > 100:
            raise ValueError(rules.MSG_GPU_TARGET)
        return self
