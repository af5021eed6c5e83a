"""ModelDeployment spec: every field bounded, cross-field rules in CEL (mirrored in pydantic)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from modelops_contract.enums import DataType, EngineKind, ModelFormat, Precision
from modelops_contract.wire import WireModel

from . import rules
from .base import DNS1123_SUBDOMAIN, cel
from .enums import ScalingMetric
from .rollout import RolloutSpec

SHA256_PATTERN = r"^[0-9a-f]{64}$"
URI_PATTERN = r"^(https://|s3://|pvc://|file://)[^\s]+$"
TENSOR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"
GPU_PRODUCT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
RESOURCE_NAME_PATTERN = r"^([a-z0-9.-]+/)?[a-z0-9A-Z._-]+$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"


Dim = Annotated[int, Field(ge=-1, le=1_048_576)]
ResourceName = Annotated[str, StringConstraints(max_length=128, pattern=RESOURCE_NAME_PATTERN)]
ResourceValue = (
    Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY_PATTERN)]
    | Annotated[int, Field(ge=0)]
)


class Source(WireModel):
    """Where the model file comes from, and the checksum it must have."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [rules.scheme_rule(*shape) for shape in rules.URI_SHAPES]
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
    def _uri_shape(self) -> Source:
        for scheme, pattern, message in rules.URI_SHAPES:
            if self.uri.startswith(scheme) and not re.match(pattern, self.uri):
                raise ValueError(message)
        return self


class ValidationSpec(WireModel):
    """A set of your own every new revision must pass before it gets client traffic."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.minAccuracy) != has(self.minAgreement)",
                    rules.MSG_VALIDATION_GOAL,
                    ".minAccuracy",
                )
            ]
        }
    )

    source: Source = Field(
        description="An .npz file: one array per input name, and `labels` (integer class per "
        "sample) or one array per output name (expected outputs)."
    )
    min_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Share of samples whose argmax equals the label."
    )
    min_agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of samples whose outputs match within the build's tolerances.",
    )

    @model_validator(mode="after")
    def _one_goal(self) -> ValidationSpec:
        if (self.min_accuracy is None) == (self.min_agreement is None):
            raise ValueError(rules.MSG_VALIDATION_GOAL)
        return self


class TensorSpec(WireModel):
    """One model input or output."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.dims.all(d, d == -1 || d >= 1)", rules.MSG_DIMS, ".dims")
            ]
        }
    )

    name: str = Field(
        max_length=128, pattern=TENSOR_NAME_PATTERN, description="Tensor name in the model graph."
    )
    data_type: DataType = Field(description="Triton data type, e.g. FP32.")
    dims: list[Dim] = Field(
        max_length=8,
        description="Shape without the batch axis; -1 marks a dynamic axis.",
    )

    @model_validator(mode="after")
    def _dims(self) -> TensorSpec:
        if any(d == 0 or d < -1 for d in self.dims):
            raise ValueError(rules.MSG_DIMS)
        return self


class ModelSpec(WireModel):
    """The model to serve."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.format == 'onnx' || (has(self.inputs) && size(self.inputs) > 0)",
                    rules.MSG_INPUTS_REQUIRED,
                    ".inputs",
                ),
                cel(
                    "!has(self.inputs) || self.inputs.all(i, self.inputs.exists_one(j, "
                    "j.name == i.name))",
                    rules.MSG_INPUTS_UNIQUE,
                    ".inputs",
                ),
                cel(
                    "!has(self.outputs) || self.outputs.all(o, self.outputs.exists_one(p, "
                    "p.name == o.name))",
                    rules.MSG_OUTPUTS_UNIQUE,
                    ".outputs",
                ),
                cel(
                    "!(self.source.uri.startsWith('pvc://') || self.source.uri.startsWith("
                    "'file://')) || !has(self.source.credentialsSecret)",
                    rules.MSG_CREDENTIALS,
                    ".source.credentialsSecret",
                ),
            ]
        }
    )

    source: Source = Field(description="Where the model file comes from.")
    format: ModelFormat = Field(default=ModelFormat.ONNX, description="How the file is stored.")
    inputs: list[TensorSpec] | None = Field(
        default=None,
        max_length=16,
        description="Input signature; optional for ONNX (read from the graph).",
    )
    outputs: list[TensorSpec] | None = Field(
        default=None, max_length=16, description="Output signature; optional (read from the graph)."
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> ModelSpec:
        if self.format != ModelFormat.ONNX and not self.inputs:
            raise ValueError(rules.MSG_INPUTS_REQUIRED)
        for message, tensors in (
            (rules.MSG_INPUTS_UNIQUE, self.inputs),
            (rules.MSG_OUTPUTS_UNIQUE, self.outputs),
        ):
            names = [t.name for t in tensors or []]
            if len(names) != len(set(names)):
                raise ValueError(message)
        local = self.source.uri.startswith(("pvc://", "file://"))
        if local and self.source.credentials_secret:
            raise ValueError(rules.MSG_CREDENTIALS)
        return self


class GpuSpec(WireModel):
    """The GPU the engine is built for and served on (node label nvidia.com/gpu.product)."""

    product: str = Field(
        max_length=63,
        pattern=GPU_PRODUCT_PATTERN,
        description="Value of the node label nvidia.com/gpu.product, e.g. NVIDIA-H100-80GB-HBM3.",
    )


class AccuracySpec(WireModel):
    """Tolerances of the accuracy gate: |engine - fp32 reference| <= atol + rtol * |reference|."""

    atol: float | None = Field(
        default=None, ge=0, le=1000, description="Absolute tolerance; default by precision."
    )
    rtol: float | None = Field(
        default=None, ge=0, le=1000, description="Relative tolerance; default by precision."
    )


class BuildSpec(WireModel):
    """How the engine is built."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.optBatchSize) || self.optBatchSize <= self.maxBatchSize",
                    rules.MSG_OPT_BATCH,
                    ".optBatchSize",
                ),
                cel("self.engine != 'tensorrt' || has(self.gpu)", rules.MSG_TENSORRT_GPU, ".gpu"),
            ]
        }
    )

    engine: EngineKind = Field(
        default=EngineKind.ONNXRUNTIME, description="tensorrt (needs gpu) or onnxruntime."
    )
    precision: Precision = Field(
        default=Precision.FP32, description="fp16 is baked into the ONNX graph before the build."
    )
    max_batch_size: int = Field(
        default=8, ge=1, le=4096, description="Largest batch the engine and Triton accept."
    )
    opt_batch_size: int | None = Field(
        default=None, ge=1, le=4096, description="Optimisation profile's opt batch; default max."
    )
    gpu: GpuSpec | None = Field(default=None, description="Target GPU; part of the engine key.")
    accuracy: AccuracySpec | None = Field(
        default=None, description="Accuracy gate against an fp32 ONNX Runtime reference."
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> BuildSpec:
        if self.opt_batch_size is not None and self.opt_batch_size > self.max_batch_size:
            raise ValueError(rules.MSG_OPT_BATCH)
        if self.engine == EngineKind.TENSORRT and self.gpu is None:
            raise ValueError(rules.MSG_TENSORRT_GPU)
        return self

    @property
    def effective_opt_batch_size(self) -> int:
        """The opt shape of the profile: optBatchSize, or maxBatchSize when unset."""
        return self.opt_batch_size or self.max_batch_size


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

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest serving pods.")
    max_replicas: int = Field(ge=1, le=1000, description="Most serving pods.")
    metric: ScalingMetric = Field(
        default=ScalingMetric.QUEUE_TIME, description="Which Triton figure is held at target."
    )
    target: float = Field(
        gt=0,
        le=1e9,
        description="Queue microseconds per request, inferences/s per replica, or GPU percent.",
    )
    scale_down_delay_seconds: int = Field(
        default=120, ge=0, le=3600, description="Lower recommendations must last this long."
    )

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(rules.MSG_MIN_MAX)
        if self.metric == ScalingMetric.GPU_UTILIZATION and self.target > 100:
            raise ValueError(rules.MSG_GPU_TARGET)
        return self


class ModelDeploymentSpec(WireModel):
    """The desired state a user writes."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.scaling) || self.scaling.metric != 'gpuUtilization' || "
                    "(has(self.build) && has(self.build.gpu))",
                    rules.MSG_GPU_METRIC,
                    ".scaling.metric",
                )
            ]
        }
    )

    model: ModelSpec = Field(description="The model to serve.")
    build: BuildSpec = Field(default_factory=BuildSpec, description="How the engine is built.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="How it is served.")
    scaling: ScalingSpec | None = Field(
        default=None, description="Autoscaling; absent: serving.replicas pods."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How new revisions replace the serving one."
    )
    validation: ValidationSpec | None = Field(
        default=None,
        description="A labelled set of your own every new revision must pass before traffic.",
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> ModelDeploymentSpec:
        gpu_metric = self.scaling and self.scaling.metric == ScalingMetric.GPU_UTILIZATION
        if gpu_metric and self.build.gpu is None:
            raise ValueError(rules.MSG_GPU_METRIC)
        return self
