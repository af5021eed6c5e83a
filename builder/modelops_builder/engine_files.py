"""What a built engine is (its file, a runner over it, the TensorRT timing cache): a leaf module
that engines.py (ONNX Runtime) and tensorrt_engine.py (TensorRT) both import."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ONNX_FILE, PLAN_FILE = "model.onnx", "model.plan"


class Runner(Protocol):
    """A built engine that runs numpy feeds (the gate and the profiler use only this)."""

    output_names: list[str]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Outputs in `output_names` order."""
        ...


@dataclass
class BuiltEngine:
    """The engine file written into the entry's version directory, and how it was made."""

    engine: str
    file_name: str
    path: Path
    runner: Runner
    tensorrt_version: str | None = None
    compute_capability: str | None = None
    fallback: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # the version dir's engine files, main first


@dataclass(frozen=True)
class TimingCache:
    """TensorRT's timing cache as kept in the store: its bytes (None at first) and a saver."""

    name: str
    data: bytes | None
    save: Callable[[bytes], None]
