"""What the operator asks the builder for, and what the builder reports back.

`BuildRequest` is the build Job's `--request` argument (and the CLI's flags); `BuildSummary` is
the one line the Job leaves as its termination message, which the operator parses.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from .enums import AccuracyMetric, DataType, EngineKind, ModelFormat, Precision, ServingBackend
from .quantization import (
    BaselineFigures,
    CalibrationRequest,
    DataSetSource,
    QuantizationReport,
    StagedSource,
)
from .shapes import ShapeLabel, ShapeRange
from .termination import LIMIT_BYTES, parse_termination, termination_line
from .wire import WireModel


class TensorSig(WireModel):
    """One input or output: name, Triton data type (FP32, INT64, ...), dims without batch."""

    name: str = Field(max_length=128)
    data_type: DataType
    dims: list[int] = Field(max_length=8)


class BuildRequest(WireModel):
    """One engine build: the Job's `--request` argument and the CLI's flags, as one model."""

    source_uri: str = Field(max_length=2048)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: ModelFormat = ModelFormat.ONNX
    inputs: list[TensorSig] | None = None
    outputs: list[TensorSig] | None = None
    engine: EngineKind = EngineKind.ONNXRUNTIME
    precision: Precision = Precision.FP32
    max_batch_size: int = Field(default=8, ge=1, le=4096)
    opt_batch_size: int | None = Field(default=None, ge=1, le=4096)
    shapes: list[ShapeRange] | None = Field(
        default=None,
        max_length=16,
        description="Per-input min/opt/max dims (batch excluded) of the dynamic dims: the "
        "TensorRT profile, and the shapes the gate (min, opt, max) and profiler (opt) run.",
    )
    gpu_product: str | None = Field(default=None, max_length=63)
    atol: float | None = Field(default=None, ge=0)
    rtol: float | None = Field(default=None, ge=0)
    metric: AccuracyMetric | None = Field(
        default=None, description="The gate's metric; default agreement for int8, else maxAbs."
    )
    min_agreement: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=1, le=1000, description="K of metric topK.")
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    max_accuracy_drop: float | None = Field(default=None, ge=0, le=1)
    calibration: CalibrationRequest | None = Field(
        default=None, description="int8 only: the calibration set and method."
    )
    labelled_set: DataSetSource | None = Field(
        default=None,
        description="spec.validation's set with labels: the gate's accuracy against them.",
    )
    store: str = Field(max_length=2048, description="A directory, file:// or s3:// prefix.")
    store_name: str | None = Field(
        default=None,
        max_length=2048,
        description="How status names the store (pvc://CLAIM or the s3 prefix); default: store.",
    )
    engine_key: str | None = Field(
        default=None, pattern=r"^sha256:[0-9a-f]{64}$", description="Computed when absent."
    )
    model_name: str = Field(default="model", max_length=63, pattern=r"^[a-zA-Z0-9_.-]+$")
    allow_fallback: bool = Field(
        default=False, description="Build with onnxruntime when tensorrt has no GPU here."
    )
    max_download_bytes: int = Field(default=20 * 1024**3, ge=1)
    profile_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="Time bound of the latency profile per batch size (it stops earlier once "
        "three windows agree within 10%); not part of the engine key.",
    )
    serving_backend: ServingBackend | None = Field(
        default=None,
        description="Backend of the store's ready-to-serve config: default tensorrt_plan for "
        "TensorRT, onnxruntime for ONNX Runtime; python for the CPU Triton of pytriton.",
    )
    staged_source: StagedSource | None = Field(
        default=None,
        description="Cluster builds: the bytes come from the engine server (sha256 checked "
        "again); sourceUri only names them.",
    )
    timing_cache: str | None = Field(
        default=None,
        pattern=r"^_timing_cache/[a-z0-9]([-a-z0-9]*[a-z0-9])?/[A-Za-z0-9_.-]+-trt[0-9.]+\.cache$",
        max_length=256,
        description="Cluster TensorRT builds: the store-level name of the tenant's sealed "
        "timing cache (_timing_cache/<namespace>/<gpu>-trt<version>.cache), chosen by the "
        "operator; the publisher keeps the new one under it, never under a name of the build's.",
    )

    @field_validator("shapes")
    @classmethod
    def _unique_shapes(cls, shapes: list[ShapeRange] | None) -> list[ShapeRange] | None:
        names = [s.name for s in shapes or []]
        if len(names) != len(set(names)):
            raise ValueError(f"shapes: one range per input, got {names}")
        return shapes

    @property
    def effective_opt_batch_size(self) -> int:
        """The profile's opt batch: optBatchSize, or maxBatchSize when unset."""
        return min(self.opt_batch_size or self.max_batch_size, self.max_batch_size)


class AccuracyReport(WireModel):
    """The accuracy gate's figures: elementwise errors always; the task's figures (agreement
    with fp32, accuracy against labels) when the gate's metric is the task's."""

    max_abs_error: float
    max_rel_error: float
    atol: float | None = None
    rtol: float | None = None
    passed: bool | None = None
    metric: AccuracyMetric | None = None
    samples: int | None = Field(default=None, ge=0)
    agreement: float | None = None
    min_agreement: float | None = None
    top_k: int | None = None
    accuracy: float | None = None
    baseline_accuracy: float | None = Field(
        default=None, description="The fp32 model's accuracy on the same labelled set."
    )
    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None


class LatencyReport(WireModel):
    """Latency at the opt batch size, in milliseconds."""

    p50: float
    p99: float


class ShapeFigures(WireModel):
    """What the gate and the profiler measured at one of the profile's shapes (min, opt, max).

    `dims` gives each input's dims without the batch axis; the latency and throughput are at
    `batch` (the opt batch), the accuracy the worst over the gate's batches at this shape.
    """

    shape: ShapeLabel
    dims: dict[str, list[int]] = Field(default_factory=dict, max_length=16)
    batch: int = Field(ge=1)
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    throughput: float | None = None


class BuildSummary(WireModel):
    """The one-line JSON the build Job prints as its termination message (< 4 KiB).

    On success its fields match `status.engine` of the ModelDeployment, so the operator copies it.
    """

    ok: bool
    key: str | None = None
    uri: str | None = None
    engine: str | None = None
    precision: str | None = None
    tensorrt_version: str | None = None
    compute_capability: str | None = None
    accuracy: AccuracyReport | None = None
    latency_ms: LatencyReport | None = None
    throughput: float | None = None
    cached: bool | None = None
    fallback: str | None = None
    shapes: list[ShapeFigures] | None = None
    quantization: QuantizationReport | None = None
    baseline: BaselineFigures | None = None
    reason: str | None = Field(default=None, max_length=128)
    message: str | None = Field(default=None, max_length=4096)

    def to_line(self) -> str:
        """The termination message: compact JSON that fits the kubelet's limit."""
        line = termination_line(self)
        if len(line.encode()) > LIMIT_BYTES and self.shapes:
            # Many inputs: the per-shape figures stay, their dims (also in engine.json) go.
            shapes = [figure.model_copy(update={"dims": {}}) for figure in self.shapes]
            line = termination_line(self.model_copy(update={"shapes": shapes}))
        if len(line.encode()) > LIMIT_BYTES and self.quantization and self.quantization.kept_float:
            # Many nodes kept in float: the count stays, the names are in engine.json.
            kept = self.quantization.kept_float
            short = [*kept[:4], f"... {len(kept) - 4} more (engine.json)"]
            quantization = self.quantization.model_copy(update={"kept_float": short})
            line = termination_line(
                BuildSummary.model_validate_json(line).model_copy(
                    update={"quantization": quantization}
                )
            )
        return line


def parse_summary(text: str) -> BuildSummary | None:
    """Parse a build Job's termination message; None when it is empty or not a summary."""
    return parse_termination(text, BuildSummary)
