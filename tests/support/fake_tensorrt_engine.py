"""The runtime half of the fake `tensorrt` module: plans, engines, execution contexts.

A plan is a key into a registry of EngineSpecs. Executing one reads each input from the address
set with set_tensor_address (ctypes: torch CPU tensors stand in for device memory), computes the
outputs (ONNX Runtime on the parsed graph, or a Python function given by a test) and writes them
to the output addresses, or asks the output's IOutputAllocator, exactly as the bindings do.
"""

from __future__ import annotations

import ctypes
import enum
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class DataType(enum.Enum):
    """pyFoundationalTypes.cpp DataType (BF16 included)."""

    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9
    FP4 = 10


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


_NUMPY = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.INT64: np.int64,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
}


def nptype(trt_type: DataType) -> Any:
    """bindings_wheel/tensorrt/__init__.py: no numpy twin for bfloat16 or fp8 -> TypeError."""
    if trt_type in _NUMPY:
        return _NUMPY[trt_type]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


class HostMemory(bytes):
    """IHostMemory: a buffer (bytes(x) and memoryview(x) work)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: DataType
    shape: tuple[int | str, ...]  # ints, or a symbol (str) that is dynamic


@dataclass
class EngineSpec:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    profile: dict[str, tuple[tuple[int, ...], ...]]
    onnx_bytes: bytes = b""
    tf32: bool = False
    compute: Callable[[dict[str, Any]], dict[str, Any]] | None = None


@dataclass
class EngineState:
    """What a test sets (no_cuda, device, build_error, no_context) and what the fake records."""

    no_cuda: bool = False
    device: str = "NVIDIA H100 80GB HBM3/9.0"
    build_error: str | None = None
    no_context: bool = False
    builds: list[dict[str, Any]] = field(default_factory=list)
    engines: dict[bytes, EngineSpec] = field(default_factory=dict)


state = EngineState()
_ids = itertools.count(1)


def reset(**settings: Any) -> EngineState:
    """A fresh state in place (modules that imported `state` keep seeing the live one)."""
    state.__dict__.update(EngineState(**settings).__dict__)
    return state


def register_engine(spec: EngineSpec) -> bytes:
    """Store a spec; the returned bytes are its plan."""
    plan = b"FAKEPLAN:%d" % next(_ids)
    state.engines[plan] = spec
    return plan


def _emit(logger: Any, message: str) -> None:
    logger.log(1, message)  # ILogger::Severity::kERROR


def _bf16_to_float(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _float_to_bf16(values: np.ndarray) -> np.ndarray:
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)  # round to nearest even
    return (rounded >> 16).astype(np.uint16)


def _tf32(values: np.ndarray) -> np.ndarray:
    """TF32 keeps 10 mantissa bits: the error an fp32 engine shows when TF32 was left on."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return ((bits + 0x1000) & np.uint32(0xFFFFE000)).view(np.float32)


def _storage(dtype: DataType) -> Any:
    return np.uint16 if dtype == DataType.BF16 else nptype(dtype)


class IOutputAllocator:
    """pyCore.cpp PyOutputAllocator: subclasses must call IOutputAllocator.__init__; TensorRT
    calls reallocate_output_async if the subclass overrides it, else reallocate_output; a return
    that is not an int, or 0, means nullptr; then notify_shape(name, dims)."""

    def __init__(self) -> None:
        self._initialised = True


class ICudaEngine:
    def __init__(self, spec: EngineSpec, logger: Any) -> None:
        self.spec, self.logger = spec, logger
        self._io = {t.name: t for t in [*spec.inputs, *spec.outputs]}

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    def get_tensor_name(self, index: int) -> str:
        return list(self._io)[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        inputs = {t.name for t in self.spec.inputs}
        return TensorIOMode.INPUT if name in inputs else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._io[name].dtype

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else -1 for d in self._io[name].shape)

    def create_execution_context(self) -> IExecutionContext | None:
        if state.no_context:
            _emit(self.logger, "createExecutionContext: out of device memory")
            return None
        return IExecutionContext(self)

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self.spec)


class EngineInspector:
    """A Myelin-fused engine as the inspector prints it without an execution context: one foreign
    node whose listed tensors are the fp32 graph boundaries, whatever runs inside in fp16."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec

    def get_engine_information(self, format: LayerInformationFormat) -> str:
        def tensor(t: TensorSpec) -> dict[str, str]:
            return {"Name": t.name, "Format/Datatype": f"Row major linear {t.dtype.name}"}

        layer = {
            "Name": "{ForeignNode[/0/Gemm.../2/Gemm]}",
            "LayerType": "Myelin",
            "Inputs": [tensor(t) for t in self.spec.inputs],
            "Outputs": [tensor(t) for t in self.spec.outputs],
        }
        return json.dumps({"Layers": [layer], "Bindings": [t.name for t in self.spec.inputs]})


class IExecutionContext:
    """set_input_shape returns False outside the profile; get_tensor_shape has -1 where an output
    dim depends on data (NvInferRuntime.h); execute_async_v3 returns False when an output has
    neither an address nor an allocator, or the allocator returns nullptr."""

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine, self.spec = engine, engine.spec
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}
        self.allocators: dict[str, Any] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        low, _, high = self.spec.profile[name]
        fits = len(shape) == len(low) and all(
            lo <= d <= hi for lo, d, hi in zip(low, shape, high, strict=True)
        )
        if not fits:
            _emit(self.engine.logger, f"setInputShape: {name} {shape} outside [{low}, {high}]")
            return False
        self.shapes[name] = shape
        return True

    def _symbols(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for tensor in self.spec.inputs:
            for dim, size in zip(tensor.shape, self.shapes.get(tensor.name, ()), strict=False):
                if isinstance(dim, str):
                    found[dim] = size
        return found

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.shapes:
            return self.shapes[name]
        symbols = self._symbols()
        dims = self.engine._io[name].shape
        return tuple(d if isinstance(d, int) else symbols.get(d, -1) for d in dims)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.addresses[name] = int(memory)
        return True

    def set_output_allocator(self, name: str, output_allocator: Any) -> bool:
        if not getattr(output_allocator, "_initialised", False):
            raise TypeError("IOutputAllocator.__init__() must be called when overriding __init__")
        if name not in {t.name for t in self.spec.outputs}:
            return False
        self.allocators[name] = output_allocator
        return True

    def _read(self, tensor: TensorSpec) -> np.ndarray:
        shape = self.shapes[tensor.name]
        storage = np.dtype(_storage(tensor.dtype))
        raw = ctypes.string_at(self.addresses[tensor.name], int(np.prod(shape)) * storage.itemsize)
        values = np.frombuffer(raw, dtype=storage).reshape(shape).copy()
        return _bf16_to_float(values) if tensor.dtype == DataType.BF16 else values

    def _compute(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.spec.compute is not None:
            return self.spec.compute(feeds)
        import onnxruntime as ort

        session = ort.InferenceSession(self.spec.onnx_bytes, providers=["CPUExecutionProvider"])
        names = [t.name for t in self.spec.outputs]
        return dict(zip(names, session.run(names, feeds), strict=True))

    def _allocate(self, name: str, size: int) -> int | None:
        allocator = self.allocators[name]
        method = getattr(type(allocator), "reallocate_output_async", None)
        try:
            if method is not None:
                pointer = allocator.reallocate_output_async(name, 0, size, 256, 0)
            else:
                pointer = allocator.reallocate_output(name, 0, size, 256)
            return int(pointer) or None
        except (TypeError, ValueError):
            return None

    def execute_async_v3(self, stream_handle: int) -> bool:
        if any(t.name not in self.shapes or t.name not in self.addresses for t in self.spec.inputs):
            _emit(self.engine.logger, "enqueueV3: input shape or address not set")
            return False
        outputs = self._compute({t.name: self._read(t) for t in self.spec.inputs})
        for tensor in self.spec.outputs:
            value = np.asarray(outputs[tensor.name])
            if self.spec.tf32 and tensor.dtype == DataType.FLOAT:
                value = _tf32(value)
            stored = (
                _float_to_bf16(value)
                if tensor.dtype == DataType.BF16
                else value.astype(_storage(tensor.dtype))
            )
            stored = np.ascontiguousarray(stored)
            dynamic = -1 in self.get_tensor_shape(tensor.name)
            if dynamic and tensor.name in self.allocators:
                pointer = self._allocate(tensor.name, stored.nbytes)
                if pointer is None:
                    _emit(self.engine.logger, f"enqueueV3: allocator for {tensor.name} failed")
                    return False
                ctypes.memmove(pointer, stored.ctypes.data, stored.nbytes)
                self.allocators[tensor.name].notify_shape(tensor.name, tuple(stored.shape))
            elif tensor.name in self.addresses and not dynamic:
                ctypes.memmove(self.addresses[tensor.name], stored.ctypes.data, stored.nbytes)
            else:
                _emit(self.engine.logger, f"enqueueV3: no address or allocator for {tensor.name}")
                return False
        return True


class Runtime:
    """py::init(createInferRuntime): nullptr -> TypeError when CUDA cannot start;
    deserialize_cuda_engine returns None for a plan it cannot read (logging why)."""

    def __init__(self, logger: Any) -> None:
        if state.no_cuda:
            _emit(logger, "CUDA initialization failure with error: 35 (insufficient driver)")
            raise TypeError("pybind11::init(): factory function returned nullptr")
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        spec = state.engines.get(bytes(serialized_engine))
        if spec is None:
            _emit(self.logger, "deserializeCudaEngine: magic tag does not match")
            return None
        return ICudaEngine(spec, self.logger)
