"""`engine.json`: the description of one published store entry (light module, pydantic only).

Store layout of one entry, published atomically (written under a temporary name, renamed last):

    <store>/<key digest>/engine.json
    <store>/<key digest>/repository/<model name>/config.pbtxt     ready-to-serve defaults
    <store>/<key digest>/repository/<model name>/1/<file>   model.plan | model.onnx (+ model.py)

A Triton pod mounts `repository/<model name>/1` and gets its own config.pbtxt from a ConfigMap
rendered by `tritonconfig.render_model_config` from this manifest and the serving spec.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .request import AccuracyReport, ServingBackend, TensorSig, WireModel

MANIFEST_NAME = "engine.json"
REPOSITORY_DIR = "repository"
VERSION_DIR = "1"


class ProfilePoint(WireModel):
    """Latency and throughput at one batch size."""

    batch: int = Field(ge=1)
    p50_ms: float
    p99_ms: float
    throughput: float = Field(description="Inferences (samples) per second.")
    windows: int = Field(default=1, ge=1)
    stable: bool = True


class EngineManifest(WireModel):
    """Everything the operator and Triton need to know about a built engine."""

    key: str
    engine: str
    precision: str
    serving_backend: ServingBackend
    model_name: str
    model_file: str = Field(description="File name inside repository/<model>/1/.")
    inputs: list[TensorSig]
    outputs: list[TensorSig]
    max_batch_size: int = Field(ge=1)
    opt_batch_size: int = Field(ge=1)
    source_sha256: str
    format: str
    gpu_product: str | None = None
    tensorrt_version: str | None = None
    compute_capability: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    accuracy: AccuracyReport | None = None
    profile: list[ProfilePoint] = Field(default_factory=list)
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    fallback: str | None = Field(
        default=None, description="Why another engine than the requested one was built."
    )
    created_at: str

    def version_dir(self, entry: Path) -> Path:
        """repository/<model>/1 inside a store entry."""
        return entry / REPOSITORY_DIR / self.model_name / VERSION_DIR


def read_manifest(entry: Path) -> EngineManifest | None:
    """The manifest of a complete store entry, or None when the entry is absent or incomplete."""
    path = entry / MANIFEST_NAME
    try:
        return EngineManifest.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
