"""INT8 builds: what the request says about calibration and data sets, and what the build reports
about the quantization and about the engine against its fp32 baseline.

A data set is an `.npz` of arrays (one per input name, batch first; `labels` for a labelled set),
read with pickles refused, like spec.validation's. In a cluster the source Job sends it to the
engine server beside the model (`stagedSource`); the build never holds the tenant's credentials.
"""

from __future__ import annotations

from pydantic import Field

from .enums import CalibrationMethod, Precision
from .shapes import ShapeLabel
from .wire import WireModel

DEFAULT_METHOD = CalibrationMethod.MINMAX
# The same limit as spec.validation's set (the validation Job's fetch).
MAX_DATASET_BYTES = 2 * 1024**3
MAX_KEEP_FLOAT = 64


class StagedSource(WireModel):
    """Where a cluster build reads a file: the engine server's copy, sent by the source Job."""

    url: str = Field(max_length=2048, description="http(s)://<engine server>/sources/<sha256>")
    token: str = Field(max_length=128, description="The source-get token of the sha256.")


class DataSetSource(WireModel):
    """An .npz data set: where it comes from, its sha256, and (cluster) the staged copy."""

    source_uri: str = Field(max_length=2048)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    staged_source: StagedSource | None = None


class CalibrationRequest(WireModel):
    """How an int8 build calibrates: the set (absent: the builder's own inputs) and the method."""

    data: DataSetSource | None = None
    method: CalibrationMethod = DEFAULT_METHOD
    keep_float: list[str] = Field(
        default_factory=list,
        max_length=MAX_KEEP_FLOAT,
        description="ONNX op types or node names kept in float besides the defaults.",
    )


class QuantizationReport(WireModel):
    """What the int8 quantization did: the calibration, and what stayed in higher precision."""

    method: CalibrationMethod
    calibration: str = Field(max_length=256, description="sha256:<hex> of the set, or `builder`.")
    samples: int = Field(ge=0)
    quantized_nodes: int = Field(ge=0)
    kept_float: list[str] = Field(
        default_factory=list, description="Nodes kept in float: `name (OpType)`."
    )
    warning: str | None = Field(default=None, max_length=512)


class BaselineShape(WireModel):
    """The fp32 baseline at one shape (opt batch), beside the engine's own figures."""

    shape: ShapeLabel
    batch: int = Field(ge=1)
    p50_ms: float
    throughput: float
    throughput_ratio: float = Field(description="The engine's throughput / the baseline's.")


class BaselineFigures(WireModel):
    """The engine against the fp32 graph of the same source: size and speed per shape."""

    precision: Precision = Precision.FP32
    runtime: str = Field(max_length=128, description="What ran the baseline (ONNX Runtime EP).")
    engine_bytes: int = Field(ge=0)
    baseline_bytes: int = Field(ge=0)
    size_ratio: float
    shapes: list[BaselineShape] = Field(default_factory=list, max_length=3)
