"""The TensorRT path: a strongly typed network from the ONNX parser, built into model.plan.

Imported only after a GPU was detected (engines.plan_engine), and tensorrt itself only inside
functions: the module loads on any machine, so tests and the CPU image can import the package.
TensorRT 11 has no FP16/INT8 builder flags: the network is strongly typed, so the precision is
whatever the ONNX graph says (precision.convert_fp16 ran before), checked after the build from
the engine inspector. Device buffers are torch CUDA tensors (torch is in the GPU image anyway).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelops_contract.request import BuildRequest, TensorSig

from .engines import PLAN_FILE, BuiltEngine, GpuInfo, TimingCache
from .errors import BuildError
from .export import DEFAULT_DYNAMIC_DIM

log = logging.getLogger(__name__)

WORKSPACE_ENV = "MODELOPS_TRT_WORKSPACE_BYTES"
DEFAULT_WORKSPACE = 4 << 30


def tensorrt_version() -> str:
    """The version of the tensorrt module of this image (ImportError when absent)."""
    import tensorrt as trt

    return str(trt.__version__)


def _profile_dims(sig: TensorSig, batch: int) -> tuple[int, ...]:
    # A dynamic non-batch dim the request did not fix gets one fixed size: TensorRT needs ranges.
    return (batch, *(d if d > 0 else DEFAULT_DYNAMIC_DIM for d in sig.dims))


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    """(network, parser): the caller keeps the parser alive as long as the network (weights)."""
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(
            "EngineBuildFailed", f"TensorRT's ONNX parser rejected the graph: {errors}"
        )
    return network, parser


def _half_layers(trt: Any, engine: Any) -> tuple[int, int]:
    """(layers with an fp16 tensor, all layers) from the engine inspector."""
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
    half = sum(1 for layer in layers if "Half" in json.dumps(layer) or "FP16" in json.dumps(layer))
    return half, len(layers)


def _compute_capability(gpu: GpuInfo) -> str | None:
    if gpu.compute_capability:
        return gpu.compute_capability
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"
    return None


def build_plan(
    request: BuildRequest,
    onnx_path: Path,
    inputs: list[TensorSig],
    version_dir: Path,
    gpu: GpuInfo,
    timing_cache: TimingCache | None,
    profile: Mapping[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] | None = None,
) -> BuiltEngine:
    """Build model.plan with one profile min=1/opt/max per input and the store's timing cache.

    `profile` gives each input's full min/opt/max shapes (shapes.profile_shapes); without it
    every dynamic non-batch dim is DEFAULT_DYNAMIC_DIM.
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    workspace = int(os.environ.get(WORKSPACE_ENV, DEFAULT_WORKSPACE))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    # DETAILED keeps per-layer precisions in the plan, so the fp16 check below can read them.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    optimization, shapes = builder.create_optimization_profile(), profile
    opt = request.effective_opt_batch_size
    for sig in inputs:
        if shapes is not None:
            optimization.set_shape(sig.name, *shapes[sig.name])
            continue
        optimization.set_shape(
            sig.name,
            _profile_dims(sig, 1),
            _profile_dims(sig, opt),
            _profile_dims(sig, request.max_batch_size),
        )
    config.add_optimization_profile(optimization)
    cache = config.create_timing_cache(
        timing_cache.data if timing_cache and timing_cache.data else b""
    )
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError("EngineBuildFailed", "TensorRT could not build the network (see log)")
    plan_bytes = bytes(serialized)
    dest = version_dir / PLAN_FILE
    dest.write_bytes(plan_bytes)
    if timing_cache is not None:
        timing_cache.save(bytes(config.get_timing_cache().serialize()))
    runner = TrtRunner(plan_bytes)
    if request.precision == "fp16":
        half, total = _half_layers(trt, runner.engine)
        if half == 0:
            raise BuildError(
                "PrecisionNotApplied", f"fp16 requested but none of {total} engine layers is fp16"
            )
        log.info("fp16 layers: %d of %d", half, total)
    return BuiltEngine(
        engine="tensorrt",
        file_name=PLAN_FILE,
        path=dest,
        runner=runner,
        tensorrt_version=str(trt.__version__),
        compute_capability=_compute_capability(gpu),
        versions={"tensorrt": str(trt.__version__)},
    )


class TrtRunner:
    """Runs a plan with the TensorRT runtime on torch CUDA buffers (copies included in timings)."""

    def __init__(self, plan: bytes) -> None:
        import tensorrt as trt
        import torch

        self._trt, self._torch = trt, torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BuildError("EngineBuildFailed", "TensorRT cannot deserialize the plan it built")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_names = [n for n, i in zip(names, is_input, strict=True) if i]
        self.output_names = [n for n, i in zip(names, is_input, strict=True) if not i]
        self.stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Copy feeds in, run one batch, copy outputs back as numpy."""
        trt, torch = self._trt, self._torch
        keep = []
        for name in self.input_names:
            tensor = torch.from_numpy(feeds[name]).cuda().contiguous()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            np_dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            dtype = torch.from_numpy(np.zeros(0, dtype=np_dtype)).dtype
            out = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise BuildError("EngineRunFailed", "TensorRT execution failed", "infrastructure")
        self.stream.synchronize()
        return [o.cpu().numpy() for o in outputs]
