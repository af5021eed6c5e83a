"""`engine.json`: the description of one published store entry (the layout is in layout.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .enums import EngineKind, ModelFormat, Precision, ServingBackend
from .layout import MANIFEST_NAME, REPOSITORY_DIR, VERSION_DIR
from .quantization import BaselineFigures, QuantizationReport
from .request import AccuracyReport, BuildSummary, LatencyReport, ShapeFigures, TensorSig
from .shapes import ShapeRange
from .wire import WireModel


class ProfilePoint(WireModel):
    """Latency and throughput at one batch size."""

    batch: int = Field(ge=1)
    p50_ms: float
    p99_ms: float
    throughput: float = Field(description="Inferences (samples) per second.")
    windows: int = Field(default=1, ge=1)
    stable: bool = True


class EntryFile(WireModel):
    """One file of a store entry: its path inside the entry, sha256 and size."""

    path: str = Field(max_length=512, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class EngineManifest(WireModel):
    """Everything the operator and Triton need to know about a built engine."""

    key: str
    engine: EngineKind
    precision: Precision
    serving_backend: ServingBackend
    model_name: str
    model_file: str = Field(description="File name inside repository/<model>/1/.")
    model_files: list[str] = Field(
        default_factory=list,
        description="Every file of repository/<model>/1/ the engine needs, the model file first "
        "(an ONNX graph's external-data file follows it); empty in entries of builder 0.1.",
    )
    inputs: list[TensorSig]
    outputs: list[TensorSig]
    max_batch_size: int = Field(ge=1)
    opt_batch_size: int = Field(ge=1)
    shape_ranges: list[ShapeRange] = Field(
        default_factory=list, description="The resolved min/opt/max dims of every input."
    )
    shapes: list[ShapeFigures] = Field(
        default_factory=list, description="Accuracy and latency at the min, opt and max shapes."
    )
    source_sha256: str
    format: ModelFormat
    gpu_product: str | None = None
    tensorrt_version: str | None = None
    compute_capability: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    accuracy: AccuracyReport | None = None
    quantization: QuantizationReport | None = Field(
        default=None, description="int8: the calibration and the nodes kept in float."
    )
    baseline: BaselineFigures | None = Field(
        default=None, description="int8: size, latency and throughput against the fp32 graph."
    )
    profile: list[ProfilePoint] = Field(default_factory=list)
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    fallback: str | None = Field(
        default=None, description="Why another engine than the requested one was built."
    )
    created_at: str
    files: list[EntryFile] = Field(
        default_factory=list,
        description="Every file of the entry but engine.json, sorted by path, with its sha256: "
        "whoever serves the entry checks each one (empty only in entries of builders before 0.3).",
    )
    mac: str | None = Field(
        default=None,
        description="HMAC-SHA256 of everything else, with the store's key (integrity.py): only "
        "the publishing step can write it; the operator refuses an entry without a valid one.",
    )

    def point_at_opt(self) -> ProfilePoint | None:
        """The profile point at the opt batch size (the figures status reports), else the first."""
        point = next((p for p in self.profile if p.batch == self.opt_batch_size), None)
        return point or (self.profile[0] if self.profile else None)

    def version_dir(self, entry: Path) -> Path:
        """repository/<model>/1 inside a store entry."""
        return entry / REPOSITORY_DIR / self.model_name / VERSION_DIR

    def engine_files(self) -> list[str]:
        """The files of the version dir the engine needs (model_file alone for old entries)."""
        return self.model_files or [self.model_file]

    def version_folder(self) -> str:
        """`repository/<model>/1`, relative to the entry."""
        return f"{REPOSITORY_DIR}/{self.model_name}/{VERSION_DIR}"

    def file(self, path: str) -> EntryFile | None:
        """The listed file at `path` (relative to the entry), or None."""
        return next((f for f in self.files if f.path == path), None)


def read_manifest(entry: Path) -> EngineManifest | None:
    """The manifest of a complete store entry, or None when the entry is absent or incomplete."""
    path = entry / MANIFEST_NAME
    try:
        return EngineManifest.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def summary_of(manifest: EngineManifest, uri: str | None, *, cached: bool) -> BuildSummary:
    """The termination-message summary of a manifest (figures at the opt batch)."""
    point = manifest.point_at_opt()
    return BuildSummary(
        ok=True,
        key=manifest.key,
        uri=uri,
        engine=manifest.engine,
        precision=manifest.precision,
        tensorrt_version=manifest.tensorrt_version,
        compute_capability=manifest.compute_capability,
        accuracy=manifest.accuracy,
        latency_ms=LatencyReport(p50=point.p50_ms, p99=point.p99_ms) if point else None,
        throughput=point.throughput if point else None,
        cached=cached,
        fallback=manifest.fallback,
        shapes=list(manifest.shapes) or None,
        quantization=manifest.quantization,
        baseline=manifest.baseline,
    )
