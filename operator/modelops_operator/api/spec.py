"""ModelDeployment spec: every field bounded, cross-field rules in CEL (mirrored in pydantic)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from modelops_contract.enums import DataType, EngineKind, ModelFormat, Precision
from modelops_contract.wire import WireModel

from . import rules
from .accuracy import AccuracySpec, CalibrationSpec
from .base import cel
from .enums import ScalingMetric
from .rollout import RolloutSpec, TrafficMode
from .serving import ScalingSpec, ServingSpec
from .shapes import TENSOR_NAME_PATTERN, ShapeRangeSpec
from .source import LOCAL_SOURCES, URI_PATTERN, Source

__all__ = ["LOCAL_SOURCES", "URI_PATTERN", "AccuracySpec", "CalibrationSpec", "Source"]

GPU_PRODUCT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


Dim = Annotated[int, Field(ge=-1, le=1_048_576)]


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
                    "self.format != 'torchscript' || (has(self.inputs) && size(self.inputs) > 0)",
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
        description="Input signature; required for torchscript, optional for onnx and "
        "exported-program (read from the graph or the program, checked against it when given).",
    )
    outputs: list[TensorSpec] | None = Field(
        default=None, max_length=16, description="Output signature; optional (read from the graph)."
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> ModelSpec:
        if self.format == ModelFormat.TORCHSCRIPT and not self.inputs:
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
                cel(
                    "!has(self.shapes) || self.shapes.all(s, self.shapes.exists_one(t, "
                    "t.name == s.name))",
                    rules.MSG_SHAPES_UNIQUE,
                    ".shapes",
                ),
                cel(
                    "!has(self.calibration) || self.precision == 'int8'",
                    rules.MSG_CALIBRATION_INT8,
                    ".calibration",
                ),
                cel(
                    "!has(self.calibration) || !has(self.calibration.source) || "
                    "!has(self.calibration.source.credentialsSecret) || "
                    "self.calibration.source.uri.startsWith('https://') || "
                    "self.calibration.source.uri.startsWith('s3://')",
                    rules.MSG_CALIBRATION_CREDENTIALS,
                    ".calibration.source.credentialsSecret",
                ),
            ]
        }
    )

    engine: EngineKind = Field(
        default=EngineKind.ONNXRUNTIME, description="tensorrt (needs gpu) or onnxruntime."
    )
    precision: Precision = Field(
        default=Precision.FP32,
        description="fp16 is baked into the ONNX graph before the build; int8 is a calibrated "
        "QDQ graph (spec.build.calibration), gated by spec.build.accuracy's metric.",
    )
    max_batch_size: int = Field(
        default=8, ge=1, le=4096, description="Largest batch the engine and Triton accept."
    )
    opt_batch_size: int | None = Field(
        default=None, ge=1, le=4096, description="Optimisation profile's opt batch; default max."
    )
    shapes: list[ShapeRangeSpec] | None = Field(
        default=None,
        max_length=16,
        description="min/opt/max dims of inputs with dynamic dims other than batch (e.g. a "
        "sequence length): TensorRT's optimisation profile (required there), the gate's min, "
        "opt and max shapes and the profiler's opt shape; part of the engine key.",
    )
    gpu: GpuSpec | None = Field(default=None, description="Target GPU; part of the engine key.")
    accuracy: AccuracySpec | None = Field(
        default=None, description="Accuracy gate against an fp32 ONNX Runtime reference."
    )
    calibration: CalibrationSpec | None = Field(
        default=None, description="int8 only: the calibration set and method; part of the key."
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> BuildSpec:
        if self.opt_batch_size is not None and self.opt_batch_size > self.max_batch_size:
            raise ValueError(rules.MSG_OPT_BATCH)
        if self.engine == EngineKind.TENSORRT and self.gpu is None:
            raise ValueError(rules.MSG_TENSORRT_GPU)
        names = [s.name for s in self.shapes or []]
        if len(names) != len(set(names)):
            raise ValueError(rules.MSG_SHAPES_UNIQUE)
        if self.calibration is not None and self.precision != Precision.INT8:
            raise ValueError(rules.MSG_CALIBRATION_INT8)
        source = self.calibration.source if self.calibration else None
        remote = source is not None and source.uri.startswith(("https://", "s3://"))
        if source is not None and source.credentials_secret and not remote:
            raise ValueError(rules.MSG_CALIBRATION_CREDENTIALS)
        return self

    @property
    def effective_opt_batch_size(self) -> int:
        """The opt shape of the profile: optBatchSize, or maxBatchSize when unset."""
        return self.opt_batch_size or self.max_batch_size


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
                ),
                cel(
                    "!has(self.scaling) || !has(self.scaling.minReplicas) || "
                    "self.scaling.minReplicas > 0 || !has(self.rollout) || "
                    "!has(self.rollout.traffic) || !has(self.rollout.traffic.mode) || "
                    "self.rollout.traffic.mode == 'Router'",
                    rules.MSG_SCALE_TO_ZERO_MODE,
                    ".scaling.minReplicas",
                ),
                cel(
                    "!has(self.build) || !has(self.build.shapes) || !has(self.model.inputs) || "
                    "self.build.shapes.all(s, self.model.inputs.exists(i, i.name == s.name))",
                    rules.MSG_SHAPES_INPUTS,
                    ".build.shapes",
                ),
                cel(
                    "!has(self.build) || !has(self.build.accuracy) || "
                    "!(has(self.build.accuracy.minAccuracy) || "
                    "has(self.build.accuracy.maxAccuracyDrop)) || "
                    "(has(self.validation) && has(self.validation.minAccuracy))",
                    rules.MSG_ACCURACY_LABELS,
                    ".build.accuracy",
                ),
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
        if self.scaling and self.scaling.scales_to_zero:
            mode = self.rollout.traffic.mode
            if mode != TrafficMode.ROUTER:
                raise ValueError(f"{rules.MSG_SCALE_TO_ZERO_MODE} (the mode is {mode})")
        inputs = {t.name for t in self.model.inputs or []}
        if inputs and any(s.name not in inputs for s in self.build.shapes or []):
            raise ValueError(rules.MSG_SHAPES_INPUTS)
        accuracy = self.build.accuracy
        wants_labels = accuracy is not None and (
            accuracy.min_accuracy is not None or accuracy.max_accuracy_drop is not None
        )
        if wants_labels and (self.validation is None or self.validation.min_accuracy is None):
            raise ValueError(rules.MSG_ACCURACY_LABELS)
        return self
