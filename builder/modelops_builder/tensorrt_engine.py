"""The TensorRT build: a strongly typed network from the ONNX parser, built into model.plan.

Imported only after a GPU was detected (engines.plan_engine), and tensorrt itself only inside
functions: the module loads on any machine. Every TensorRT call that can fail is checked, and a
failure's BuildError carries TensorRT's own error lines (tensorrt_logger):
- trt.Builder: pybind11 raises TypeError ("factory function returned nullptr") when TensorRT
  cannot initialise CUDA, typically a driver older than the image's CUDA: GpuUnavailable;
- the ONNX parser returns False and lists its errors: EngineBuildFailed;
- IOptimizationProfile.set_shape raises RuntimeError, add_optimization_profile returns -1;
- set_timing_cache returns False for a cache of another device (another GPU model, a MIG slice,
  a cache named "gpu" shared by several GPUs): logged, and the build starts a fresh cache;
- build_serialized_network returns None: EngineBuildFailed.
TensorRT 11 has no FP16/INT8 builder flags: the precision is whatever the ONNX graph says
(precision.convert_fp16, or quantize.quantize_int8's Q/DQ nodes: explicit quantization, no
calibrator) and is checked on the parsed network before the build.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelops_contract.request import BuildRequest

from .engine_files import PLAN_FILE, BuiltEngine, TimingCache
from .errors import BuildError
from .gpu import GpuInfo, gpu_unavailable, image_cuda_version
from .shapes import ProfileShape
from .tensorrt_logger import MESSAGE_LIMIT, TensorRTMessages, make_logger
from .tensorrt_precision import require_fp16, require_int8
from .tensorrt_runner import DeviceBuffers, TrtRunner

log = logging.getLogger(__name__)

WORKSPACE_ENV = "MODELOPS_TRT_WORKSPACE_BYTES"
DEFAULT_WORKSPACE = 4 << 30


def _builder(trt: Any, logger: Any, gpu: GpuInfo, messages: TensorRTMessages) -> Any:
    try:
        return trt.Builder(logger)
    except (TypeError, RuntimeError) as exc:  # pybind11: "factory function returned nullptr"
        detail = f"{exc}; TensorRT said: {messages.describe()}"
        raise gpu_unavailable(gpu, f"TensorRT cannot create a builder ({detail})") from exc


def _parse(
    trt: Any, builder: Any, logger: Any, onnx_path: Path, messages: TensorRTMessages
) -> tuple[Any, Any]:
    """(network, parser): the caller keeps the parser alive as long as the network (weights)."""
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    since = messages.mark()
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        detail = (errors or messages.describe(since))[:MESSAGE_LIMIT]
        raise BuildError(
            "EngineBuildFailed", f"TensorRT's ONNX parser rejected the graph: {detail}"
        )
    return network, parser


def _clear_tf32(trt: Any, config: Any) -> None:
    """fp32 means fp32: TF32 (on by default) rounds matmul inputs to 10 mantissa bits (~1e-3)."""
    flag = getattr(trt.BuilderFlag, "TF32", None)
    if flag is not None:
        config.clear_flag(flag)


def _add_profile(
    trt: Any,
    builder: Any,
    config: Any,
    shapes: Mapping[str, ProfileShape],
    messages: TensorRTMessages,
) -> None:
    since = messages.mark()
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        try:
            profile.set_shape(name, low, opt, high)
        except RuntimeError as exc:  # pyCore.cpp: "Shape provided for min is inconsistent ..."
            raise BuildError(
                "EngineBuildFailed",
                f"TensorRT rejected the profile of input '{name}' (min {list(low)}, opt "
                f"{list(opt)}, max {list(high)}): {exc}; {messages.describe(since)}",
            ) from exc
    if config.add_optimization_profile(profile) < 0:
        raise BuildError(
            "EngineBuildFailed",
            f"TensorRT rejected the optimisation profile {dict(shapes)}: "
            f"{messages.describe(since)}",
        )


def _attach_timing_cache(
    config: Any, timing_cache: TimingCache | None, messages: TensorRTMessages
) -> None:
    """Load the store's cache; a cache that does not fit this device is replaced, never fatal."""
    if timing_cache is None:
        return
    since = messages.mark()
    cache = config.create_timing_cache(timing_cache.data or b"")
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if timing_cache.data:
        log.warning(
            "timing cache %s does not fit this GPU or TensorRT (%s): starting a fresh one",
            timing_cache.name,
            messages.describe(since),
        )
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
        log.warning("building without a timing cache: %s", messages.describe(since))


def _save_timing_cache(config: Any, timing_cache: TimingCache | None) -> None:
    """Write the build's timing cache back to the store; a lost cache only slows the next build."""
    if timing_cache is None:
        return
    cache = config.get_timing_cache()
    if cache is None:  # no cache was attached (see _attach_timing_cache)
        log.warning("no timing cache to save for %s", timing_cache.name)
        return
    try:
        data = bytes(cache.serialize())
    except (RuntimeError, TypeError, ValueError) as exc:
        log.warning("timing cache %s not serialised: %s", timing_cache.name, exc)
        return
    timing_cache.save(data)


def _compute_capability(gpu: GpuInfo) -> str | None:
    if gpu.compute_capability:
        return gpu.compute_capability
    import torch  # drivers before R510 cannot tell nvidia-smi's compute_cap

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"
    return None


def _versions(version: str, gpu: GpuInfo) -> dict[str, str]:
    found = {"tensorrt": version, "cuda": image_cuda_version(), "driver": gpu.driver_version}
    return {name: value for name, value in found.items() if value}


def build_plan(
    request: BuildRequest,
    onnx_path: Path,
    version_dir: Path,
    gpu: GpuInfo,
    timing_cache: TimingCache | None,
    profile: Mapping[str, ProfileShape],
    *,
    buffers: DeviceBuffers | None = None,
) -> BuiltEngine:
    """Build model.plan for exactly the `profile` shapes (shapes.profile_shapes)."""
    import tensorrt as trt

    messages = TensorRTMessages()
    logger = make_logger(trt, messages)
    builder = _builder(trt, logger, gpu, messages)
    network, _parser = _parse(trt, builder, logger, onnx_path, messages)
    if request.precision == "fp16":
        require_fp16(trt, network)
    elif request.precision == "int8":
        require_int8(trt, network)
    config = builder.create_builder_config()
    workspace = int(os.environ.get(WORKSPACE_ENV, DEFAULT_WORKSPACE))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if request.precision == "fp32":
        _clear_tf32(trt, config)
    _add_profile(trt, builder, config, profile, messages)
    _attach_timing_cache(config, timing_cache, messages)
    since = messages.mark()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(
            "EngineBuildFailed", f"TensorRT could not build the network: {messages.describe(since)}"
        )
    plan_bytes = bytes(serialized)
    dest = version_dir / PLAN_FILE
    dest.write_bytes(plan_bytes)
    _save_timing_cache(config, timing_cache)
    runner = TrtRunner(plan_bytes, gpu, buffers)
    version = str(trt.__version__)
    return BuiltEngine(
        engine="tensorrt",
        file_name=PLAN_FILE,
        path=dest,
        runner=runner,
        tensorrt_version=version,
        compute_capability=_compute_capability(gpu),
        versions=_versions(version, gpu),
    )
