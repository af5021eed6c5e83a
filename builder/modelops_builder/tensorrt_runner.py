"""Run a TensorRT plan on numpy feeds: the gate's and the profiler's view of the engine.

Device memory goes through a small `DeviceBuffers` layer: torch CUDA tensors in production, a
torch CPU stand-in in tests (TensorRT only sees addresses). Two things numpy cannot do on its own
are handled here: outputs whose shape depends on the data (TensorRT reports -1 until it ran;
an IOutputAllocator receives the size and the final shape) and bf16 tensors (numpy has no
bfloat16: torch buffers carry them and results come back as float32).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from .errors import BuildError
from .gpu import GpuInfo, gpu_unavailable
from .tensorrt_logger import TensorRTMessages, make_logger

# TensorRT DataType name -> torch dtype name. FP8/INT4/FP4 have no host type to compare.
TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
}


class DeviceBuffers(Protocol):
    """Memory TensorRT can address, and the stream it runs on."""

    def upload(self, array: Any, dtype: str) -> Any:
        """A device copy of a host array, converted to torch dtype `dtype`."""
        ...

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        """An uninitialised device tensor."""
        ...

    def empty_bytes(self, size: int) -> Any:
        """At least `size` bytes of device memory (an output allocator's request)."""
        ...

    def address(self, buffer: Any) -> int:
        """The device address of a buffer."""
        ...

    def download(self, buffer: Any, dtype: str, shape: tuple[int, ...]) -> Any:
        """The first prod(shape) elements of `buffer` as a host numpy array (bf16 as float32)."""
        ...

    def stream_handle(self) -> int:
        """The CUDA stream TensorRT enqueues on (0: the default stream)."""
        ...

    def synchronize(self) -> None:
        """Wait for everything enqueued on the stream."""
        ...


class TorchBuffers:
    """DeviceBuffers on torch tensors: device "cuda" for real, "cpu" as the tests' stand-in."""

    def __init__(self, device: str = "cuda") -> None:
        import torch

        self._torch, self._device = torch, device
        # Copies and TensorRT share one stream: no cross-stream ordering to get wrong.
        self._stream = torch.cuda.Stream() if device == "cuda" else None  # type: ignore[no-untyped-call]

    def _dtype(self, name: str) -> Any:
        return getattr(self._torch, name)

    def upload(self, array: Any, dtype: str) -> Any:
        """Copy on this object's stream, converting on the device (bf16 included)."""
        host = self._torch.from_numpy(np.ascontiguousarray(array))
        with self._on_stream():
            return host.to(self._device).to(self._dtype(dtype)).contiguous()

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        """torch.empty on the device."""
        with self._on_stream():
            return self._torch.empty(shape, dtype=self._dtype(dtype), device=self._device)

    def empty_bytes(self, size: int) -> Any:
        """A uint8 tensor of max(size, 1) bytes (a zero-size output still needs an address)."""
        with self._on_stream():
            return self._torch.empty(max(size, 1), dtype=self._torch.uint8, device=self._device)

    def address(self, buffer: Any) -> int:
        """data_ptr()."""
        return int(buffer.data_ptr())

    def download(self, buffer: Any, dtype: str, shape: tuple[int, ...]) -> Any:
        """Reinterpret raw bytes when needed, widen bf16 to float32, copy to host."""
        torch_dtype = self._dtype(dtype)
        count = math.prod(shape)
        with self._on_stream():
            if buffer.dtype != torch_dtype:  # allocator bytes: view them as the tensor's type
                size = count * torch_dtype.itemsize
                buffer = buffer[:size].view(torch_dtype)
            tensor = buffer.reshape(-1)[:count].reshape(shape)
            if torch_dtype == self._torch.bfloat16:
                tensor = tensor.float()
            return tensor.cpu().numpy()

    def stream_handle(self) -> int:
        """The dedicated CUDA stream, or 0 on the CPU stand-in."""
        return int(self._stream.cuda_stream) if self._stream is not None else 0

    def synchronize(self) -> None:
        """Stream synchronise (nothing to wait for on the CPU)."""
        if self._stream is not None:
            self._stream.synchronize()

    def _on_stream(self) -> Any:
        import contextlib

        if self._stream is None:
            return contextlib.nullcontext()
        return self._torch.cuda.stream(self._stream)


def default_buffers() -> DeviceBuffers:
    """Production device memory: torch CUDA tensors (tests replace this function)."""
    return TorchBuffers("cuda")


class OutputMemory:
    """What an output allocator was asked for: one growing byte buffer and the final shape."""

    def __init__(self, buffers: DeviceBuffers) -> None:
        self.buffers = buffers
        self.buffer: Any = None
        self.size = 0
        self.shape: tuple[int, ...] | None = None

    def reallocate(self, size: int) -> int:
        """An address of at least `size` bytes, reusing the buffer when it is big enough."""
        if self.buffer is None or size > self.size:
            self.buffer = self.buffers.empty_bytes(size)
            self.size = max(size, 1)
        return self.buffers.address(self.buffer)

    def notify(self, shape: Any) -> None:
        """TensorRT's final shape of the output."""
        self.shape = tuple(int(d) for d in shape)


def make_output_allocator(trt: Any, memory: OutputMemory) -> Any:
    """A trt.IOutputAllocator backed by `memory` (defined here: tensorrt is imported lazily)."""

    class OutputAllocator(trt.IOutputAllocator):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)  # pybind11 trampoline: the base must initialise
            self.memory = memory

        def reallocate_output(
            self, tensor_name: str, memory: int, size: int, alignment: int
        ) -> int:
            return self.memory.reallocate(int(size))

        def reallocate_output_async(
            self, tensor_name: str, memory: int, size: int, alignment: int, stream: int
        ) -> int:
            return self.memory.reallocate(int(size))

        def notify_shape(self, tensor_name: str, shape: Any) -> None:
            self.memory.notify(shape)

    return OutputAllocator()


def torch_dtype_name(trt_dtype: Any, tensor: str) -> str:
    """torch dtype name of a TensorRT DataType; EngineBuildFailed for types with no host twin."""
    name = str(getattr(trt_dtype, "name", trt_dtype)).rsplit(".", 1)[-1]
    if name not in TORCH_DTYPES:
        raise BuildError(
            "EngineBuildFailed", f"tensor '{tensor}' has TensorRT type {name}, which cannot be read"
        )
    return TORCH_DTYPES[name]


class TrtRunner:
    """Runs a plan with the TensorRT runtime (host-device copies included in timings)."""

    def __init__(
        self, plan: bytes, gpu: GpuInfo | None = None, buffers: DeviceBuffers | None = None
    ) -> None:
        import tensorrt as trt

        self._trt = trt
        self.messages = TensorRTMessages()
        self._logger = make_logger(trt, self.messages)
        try:
            runtime = trt.Runtime(self._logger)
        except (TypeError, RuntimeError) as exc:  # pybind11: factory function returned nullptr
            detail = f"{exc}; {self.messages.describe()}"
            raise gpu_unavailable(gpu, f"TensorRT cannot create its runtime ({detail})") from exc
        self.engine = runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise BuildError(
                "EngineBuildFailed",
                f"TensorRT cannot deserialize the plan it built: {self.messages.describe()}",
            )
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BuildError(
                "EngineRunFailed",
                f"TensorRT cannot create an execution context: {self.messages.describe()}",
                "infrastructure",
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_names = [n for n, i in zip(names, is_input, strict=True) if i]
        self.output_names = [n for n, i in zip(names, is_input, strict=True) if not i]
        self.dtypes = {n: torch_dtype_name(self.engine.get_tensor_dtype(n), n) for n in names}
        try:
            self.buffers = buffers or default_buffers()
        except RuntimeError as exc:  # torch: "The NVIDIA driver on your system is too old"
            raise gpu_unavailable(gpu, f"torch cannot use CUDA ({exc})") from exc
        self._allocated: dict[str, tuple[Any, OutputMemory]] = {}

    def _fail(self, what: str) -> BuildError:
        return BuildError(
            "EngineRunFailed", f"{what}: {self.messages.describe()}", "infrastructure"
        )

    def _allocator(self, name: str) -> OutputMemory:
        if name not in self._allocated:
            memory = OutputMemory(self.buffers)
            allocator = make_output_allocator(self._trt, memory)
            if not self.context.set_output_allocator(name, allocator):
                raise self._fail(f"TensorRT refused an output allocator for '{name}'")
            self._allocated[name] = (allocator, memory)  # the context does not own it
        return self._allocated[name][1]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        """Copy feeds in, run one batch, copy outputs back as numpy (bf16 as float32)."""
        keep = []
        for name in self.input_names:
            buffer = self.buffers.upload(feeds[name], self.dtypes[name])
            keep.append(buffer)
            shape = tuple(int(d) for d in np.shape(feeds[name]))
            if not self.context.set_input_shape(name, shape):
                raise self._fail(f"input '{name}' shape {shape} is outside the engine's profile")
            self.context.set_tensor_address(name, self.buffers.address(buffer))
        fixed: dict[str, Any] = {}
        for name in self.output_names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # data-dependent: sized by TensorRT while it runs
                self._allocator(name)
                continue
            fixed[name] = self.buffers.empty(shape, self.dtypes[name])
            self.context.set_tensor_address(name, self.buffers.address(fixed[name]))
        if not self.context.execute_async_v3(self.buffers.stream_handle()):
            raise self._fail("TensorRT execution failed")
        self.buffers.synchronize()
        return [self._result(name, fixed) for name in self.output_names]

    def _result(self, name: str, fixed: dict[str, Any]) -> Any:
        if name in fixed:
            buffer = fixed[name]
            return self.buffers.download(buffer, self.dtypes[name], tuple(buffer.shape))
        memory = self._allocated[name][1]
        if memory.shape is None or memory.buffer is None:
            raise self._fail(f"TensorRT never reported the shape of output '{name}'")
        return self.buffers.download(memory.buffer, self.dtypes[name], memory.shape)
