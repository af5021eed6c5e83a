"""Build the engine file (model.onnx for ONNX Runtime, model.plan for TensorRT) and run it.

GPU detection (gpu.py) never imports tensorrt or CUDA: it asks nvidia-smi, so a CPU node learns
it has no GPU cheaply. The TensorRT build itself lives in `tensorrt_engine` and is imported only
when a GPU is present; the image's TensorRT must be the version the serving Triton runs
(tensorrt_versions), or nothing is built.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelops_contract.request import BuildRequest

from .engine_files import ONNX_FILE, BuiltEngine, Runner, TimingCache
from .errors import BuildError
from .gpu import NO_GPU_ENV, GpuInfo, detect_gpu
from .shapes import ProfileShape

__all__ = [
    "NO_GPU_ENV",
    "BuiltEngine",
    "EnginePlan",
    "GpuInfo",
    "OrtRunner",
    "Runner",
    "TimingCache",
    "build_engine",
    "detect_gpu",
    "plan_engine",
]

log = logging.getLogger(__name__)

# onnxruntime 1.31 on CPU crashes (SIGSEGV) at session creation on fp16 graphs where a 3-D
# Transpose feeds a MatMul with an fp16 weight (every attention projection): MatmulTransposeFusion
# makes an fp16 FusedMatMul, which the CPU's fp16->fp32 initializer pass then breaks on. Skipping
# that one fusion keeps the initializer pass, which stores fp16 weights as fp32 once instead of
# casting them on every run (and memory at one fp32 copy of the weights).
ORT_DISABLED_OPTIMIZERS = ["MatmulTransposeFusion"]


def ort_providers() -> list[str]:
    """ONNX Runtime execution providers to use here, best first (CPU always last)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available]


_ORT_NUMPY: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class OrtRunner:
    """An ONNX Runtime session over a graph."""

    def __init__(self, path: Path, providers: list[str] | None = None, *, reference: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if reference:
            # The reference runs the graph as written: no fusions, one thread, so the gate
            # compares the engine with plain fp32 arithmetic rather than with itself.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            options.intra_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path),
                options,
                providers=providers or ["CPUExecutionProvider"],
                disabled_optimizers=ORT_DISABLED_OPTIMIZERS,
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented
            raise BuildError(
                "EngineBuildFailed", f"ONNX Runtime cannot load the graph: {exc}"
            ) from exc
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_types = {i.name: _ORT_NUMPY.get(i.type) for i in self.session.get_inputs()}

    def cast(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Feeds in the dtypes this graph declares (fp16 engine inputs for an fp32 reference)."""
        return {
            name: value.astype(self.input_types[name]) if self.input_types.get(name) else value
            for name, value in feeds.items()
        }

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Run one batch."""
        return list(self.session.run(self.output_names, feeds))


@dataclass(frozen=True)
class EnginePlan:
    """Which engine will really be built, decided before fetching (it is part of the key)."""

    engine: str
    gpu: GpuInfo
    tensorrt_version: str | None = None
    fallback: str | None = None


def plan_engine(request: BuildRequest) -> EnginePlan:
    """Decide the engine: tensorrt needs a GPU and the tensorrt module, else fail or fall back.

    Without a GPU the error is GpuUnavailable of kind "infrastructure": the request is valid,
    the Job merely ran on a node (or image) that cannot build it, and a retry on the right node
    succeeds. With allowFallback the build uses ONNX Runtime and says so in the summary.
    """
    gpu = detect_gpu() if request.engine == "tensorrt" else GpuInfo(False)
    if request.engine == "onnxruntime":
        return EnginePlan("onnxruntime", gpu)
    why = gpu.why_absent
    version = None
    if gpu.present:
        from .tensorrt_versions import check_alignment, expected_version, installed_version

        try:
            version = installed_version()
        except ImportError as exc:
            why = f"tensorrt is not importable in this image: {exc}"
    if version is not None:
        # A plan of another TensorRT version would never load in Triton: refuse, even with
        # allowFallback (the images are misconfigured; no node would do better).
        check_alignment(version, expected_version())
        return EnginePlan("tensorrt", gpu, tensorrt_version=version)
    reason = "GpuUnavailable" if not gpu.present else "TensorRTUnavailable"
    if request.allow_fallback:
        log.warning("%s (%s): building onnxruntime instead (allowFallback)", reason, why)
        return EnginePlan("onnxruntime", gpu, fallback=f"{reason}: {why}; built onnxruntime")
    raise BuildError(
        reason,
        f"engine tensorrt needs an NVIDIA GPU with TensorRT: {why} "
        "(set allowFallback to build onnxruntime instead)",
        "infrastructure",
    )


def build_engine(
    plan: EnginePlan,
    request: BuildRequest,
    onnx_path: Path,
    inputs: list[Any],
    version_dir: Path,
    timing_cache: TimingCache | None = None,
    profile: Mapping[str, ProfileShape] | None = None,
) -> BuiltEngine:
    """Write the engine file into `version_dir` and return a runner over it.

    `profile`: per input, the full min/opt/max shapes of TensorRT's optimisation profile
    (shapes.profile_shapes); ONNX Runtime needs none.
    """
    import onnxruntime as ort

    from .onnx_files import copy_model

    if plan.engine == "tensorrt":
        from .tensorrt_engine import build_plan

        if profile is None:
            raise BuildError("InvalidRequest", "a TensorRT build needs its profile shapes")
        return build_plan(request, onnx_path, version_dir, plan.gpu, timing_cache, profile)
    dest = version_dir / ONNX_FILE
    # The graph and its external data, under the builder's own names (model.onnx[.data]).
    files = copy_model(onnx_path, dest)
    providers = ort_providers()
    runner = OrtRunner(dest, providers)
    log.info("onnxruntime %s providers %s", ort.__version__, providers)
    return BuiltEngine(
        engine="onnxruntime",
        file_name=ONNX_FILE,
        path=dest,
        runner=runner,
        fallback=plan.fallback,
        versions={"onnxruntime": ort.__version__, "providers": ",".join(providers)},
        files=files,
    )
