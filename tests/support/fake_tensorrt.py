"""A small fake of the `tensorrt` module (builder side), for machines without a GPU.

Installed with `install(monkeypatch, **state)` as sys.modules["tensorrt"]. It mirrors what the
TensorRT 11.1 Python bindings (python/src/infer/pyCore.cpp, pyFoundationalTypes.cpp,
packaging/bindings_wheel/tensorrt/__init__.py) and the C++ API they wrap (include/NvInfer.h,
NvInferRuntime.h) return and raise, above all when something fails; each docstring names the
behaviour it mirrors. Engines run for real: a plan built from an ONNX file is executed with ONNX
Runtime on the CPU, reading and writing the addresses it is given (fake_tensorrt_engine).
"""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from tests.support.fake_tensorrt_engine import (
    DataType,
    EngineSpec,
    HostMemory,
    ICudaEngine,
    IExecutionContext,
    IOutputAllocator,
    LayerInformationFormat,
    Runtime,
    TensorIOMode,
    TensorSpec,
    nptype,
    register_engine,
    state,
)
from tests.support.fake_tensorrt_network import INetworkDefinition, ITensor, LayerType, OnnxParser

__version__ = "11.4.0.106"
__all__ = ["DataType", "ICudaEngine", "IExecutionContext", "IOutputAllocator", "Runtime"]
__all__ += ["LayerInformationFormat", "LayerType", "TensorIOMode", "nptype", "register_engine"]
__all__ += ["INetworkDefinition", "ITensor", "OnnxParser", "state"]
float32, float16, bfloat16 = DataType.FLOAT, DataType.HALF, DataType.BF16
NULLPTR = "pybind11::init(): factory function returned nullptr"


class BuilderFlag(enum.Enum):
    """pyCore.cpp BuilderFlag: TensorRT 11 has no FP16/INT8/BF16 flag; TF32 is still there."""

    DEBUG = 2
    REFIT = 4
    DISABLE_TIMING_CACHE = 5
    TF32 = 6
    VERSION_COMPATIBLE = 13


class NetworkDefinitionCreationFlag(enum.IntEnum):
    """STRONGLY_TYPED is deprecated in 11 (always on) but still accepted."""

    STRONGLY_TYPED = 5


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class ProfilingVerbosity(enum.Enum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class ILogger:
    """pyCore.cpp PyLogger: subclasses implement log(severity, msg) and call ILogger.__init__."""

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        self._initialised = True

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        raise NotImplementedError


# py::enum_(...).export_values(): trt.ILogger.WARNING, trt.Logger.WARNING, ...
for _severity in ILogger.Severity:
    setattr(ILogger, _severity.name, _severity)


class Logger(ILogger):
    """pyCore.cpp DefaultLogger: prints to stdout, so nothing reaches the build's error message."""

    def __init__(self, min_severity: ILogger.Severity = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        if severity <= self.min_severity:
            print(f"[TRT] {msg}")


def _emit(logger: Any, message: str, severity: int = 1) -> None:
    if not getattr(logger, "_initialised", False):
        raise TypeError("ILogger.__init__() must be called when overriding __init__")
    logger.log(ILogger.Severity(severity), message)


# --- profiles, timing caches, config -----------------------------------------------------------
class IOptimizationProfile:
    """set_shape raises RuntimeError when a shape is inconsistent (pyCore.cpp opt_profile_set_shape,
    PY_ASSERT_RUNTIME_ERROR on setDimensions returning false); bool() is isValid()."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        low, mid, high = tuple(min), tuple(opt), tuple(max)
        if any(d < 0 for d in low):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        if len(mid) != len(low) or any(o < m for o, m in zip(mid, low, strict=True)):
            raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
        if len(high) != len(mid) or any(h < o for h, o in zip(high, mid, strict=True)):
            raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
        self.shapes[input] = (low, mid, high)

    def __bool__(self) -> bool:
        return bool(self.shapes)


CACHE_MAGIC = b"FAKECACHE:"


class ITimingCache:
    """A timing cache bound to the device it was measured on; serialize() gives IHostMemory."""

    def __init__(self, device: str, entries: int = 0) -> None:
        self.device, self.entries = device, entries

    def serialize(self) -> HostMemory:
        body = json.dumps({"device": self.device, "entries": self.entries}).encode()
        return HostMemory(CACHE_MAGIC + body)


def read_cache(blob: bytes) -> dict[str, Any]:
    """A serialized fake cache as {device, entries} (tests look inside what the store holds)."""
    assert blob.startswith(CACHE_MAGIC), blob[:20]
    return dict(json.loads(blob[len(CACHE_MAGIC) :]))


class IBuilderConfig:
    """NvInfer.h: kTF32 is enabled by default; addOptimizationProfile returns -1 for an invalid
    profile; createTimingCache returns nullptr (None) for a blob it cannot read; setTimingCache
    returns false (ignore_mismatch=False) for a cache of other device properties, and then
    getTimingCache() stays None."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.flags = {BuilderFlag.TF32}
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.pools: dict[MemoryPoolType, int] = {}

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pools[pool] = pool_size

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self.flags

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile:
            _emit(self.logger, "IBuilderConfig::addOptimizationProfile: invalid profile")
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        blob = bytes(serialized_timing_cache)
        if not blob:
            return ITimingCache(state.device)
        if not blob.startswith(CACHE_MAGIC):
            _emit(self.logger, "Serialization assertion failed: timing cache blob is corrupt")
            return None
        data = read_cache(blob)
        return ITimingCache(data["device"], data["entries"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache is None:  # pybind11: None does not convert to ITimingCache const&
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache.device != state.device and not ignore_mismatch:
            _emit(self.logger, f"Timing cache of {cache.device} does not match {state.device}")
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self.timing_cache


# --- the builder -------------------------------------------------------------------------------
class Builder:
    """py::init(createInferBuilder): when TensorRT cannot initialise CUDA (e.g. a driver older
    than the image's CUDA) createInferBuilder returns nullptr, TensorRT logs the CUDA error and
    pybind11 raises TypeError("pybind11::init(): factory function returned nullptr").
    build_serialized_network returns None on failure (pyCore.cpp), reasons go to the logger."""

    def __init__(self, logger: Any) -> None:
        if state.no_cuda:
            _emit(logger, "CUDA initialization failure with error: 35 (insufficient driver)")
            raise TypeError(NULLPTR)
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self.logger)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _profile_error(self, network: INetworkDefinition, config: IBuilderConfig) -> str | None:
        if not config.profiles:
            return "Network has dynamic or shape inputs, but no optimization profile was defined"
        shapes = config.profiles[0].shapes
        for tensor in network.inputs:
            if tensor.name not in shapes:
                return f"optimization profile is missing values for input {tensor.name}"
            low, _, high = shapes[tensor.name]
            if len(low) != len(tensor.shape):
                return f"profile of {tensor.name} has rank {len(low)}, network {tensor.shape}"
            for axis, dim in enumerate(tensor.shape):
                if isinstance(dim, int) and dim > 0 and not low[axis] == high[axis] == dim:
                    return f"profile of {tensor.name} does not satisfy its dimension {axis}"
        return None

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> HostMemory | None:
        problem = state.build_error or self._profile_error(network, config)
        if problem:
            _emit(self.logger, f"IBuilder::buildSerializedNetwork: Error Code 4: {problem}")
            return None
        if config.timing_cache is not None:
            config.timing_cache.entries += 1
        profile = config.profiles[0].shapes
        spec = EngineSpec(
            inputs=[TensorSpec(t.name, t.dtype, t.shape) for t in network.inputs],
            outputs=[TensorSpec(t.name, t.dtype, t.shape) for t in network.outputs],
            profile=profile,
            onnx_bytes=network.onnx_bytes,
            tf32=config.get_flag(BuilderFlag.TF32),
        )
        state.builds.append({"profile": profile, "flags": set(config.flags), "spec": spec})
        return HostMemory(register_engine(spec))


def install(monkeypatch: pytest.MonkeyPatch, **settings: Any) -> Any:
    """Make `import tensorrt` return this module, with a fresh state (see EngineState)."""
    import sys

    from tests.support import fake_tensorrt_engine

    fake_tensorrt_engine.reset(**settings)
    module = sys.modules[__name__]
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module
