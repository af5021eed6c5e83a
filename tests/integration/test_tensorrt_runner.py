"""TrtRunner on engines the fake runtime executes in CPU memory (torch CPU tensors by address).

Two engines numpy alone cannot run: one whose output shape depends on the data (TensorRT reports
-1 until it has run and sizes the output through an IOutputAllocator), and one with bf16 I/O
(no numpy bfloat16: torch buffers, float32 results).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from modelops_builder.errors import BuildError
from modelops_builder.tensorrt_runner import (
    OutputMemory,
    TorchBuffers,
    TrtRunner,
    torch_dtype_name,
)
from tests.support.fake_tensorrt_engine import (
    DataType,
    EngineSpec,
    TensorSpec,
    register_engine,
    state,
)
from tests.support.tensorrt_support import H100, install_gpu_node

PROFILE = {"x": ((1, 6), (4, 6), (8, 6))}


@pytest.fixture(autouse=True)
def gpu_node(monkeypatch: pytest.MonkeyPatch) -> None:
    install_gpu_node(monkeypatch)


def _positive_indices(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Like ONNX NonZero: how many values are positive is known only after running."""
    return {"where": np.flatnonzero(feeds["x"] > 0).astype(np.int64)}


Compute = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _plan(
    outputs: list[TensorSpec], compute: Compute, inputs: list[TensorSpec] | None = None
) -> bytes:
    spec = EngineSpec(
        inputs=inputs or [TensorSpec("x", DataType.FLOAT, ("batch", 6))],
        outputs=outputs,
        profile=PROFILE,
        compute=compute,
    )
    return register_engine(spec)


def test_data_dependent_output_goes_through_an_output_allocator() -> None:
    plan = _plan([TensorSpec("where", DataType.INT64, ("nonzero",))], _positive_indices)
    runner = TrtRunner(plan, H100, TorchBuffers("cpu"))
    assert runner.context.get_tensor_shape("where") == (-1,)
    for batch, seed in ((2, 1), (8, 2), (1, 3)):  # the buffer grows, then is reused
        x = np.random.default_rng(seed).standard_normal((batch, 6)).astype(np.float32)
        (where,) = runner.run({"x": x})
        np.testing.assert_array_equal(where, np.flatnonzero(x > 0))
        assert where.dtype == np.int64


def test_bf16_outputs_come_back_as_float32() -> None:
    plan = _plan([TensorSpec("y", DataType.BF16, ("batch", 6))], lambda f: {"y": f["x"] * 3})
    runner = TrtRunner(plan, H100, TorchBuffers("cpu"))
    x = np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6)
    (y,) = runner.run({"x": x})
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x * 3, rtol=2**-8)  # bf16 keeps 8 significant bits


def test_bf16_inputs_are_converted_on_the_way_in() -> None:
    inputs = [TensorSpec("x", DataType.BF16, ("batch", 6))]
    plan = _plan([TensorSpec("y", DataType.FLOAT, ("batch", 6))], lambda f: {"y": f["x"]}, inputs)
    runner = TrtRunner(plan, H100, TorchBuffers("cpu"))
    x = np.full((2, 6), 1.0 + 2**-10, dtype=np.float32)  # not representable in bf16
    (y,) = runner.run({"x": x})
    np.testing.assert_array_equal(y, np.ones((2, 6), dtype=np.float32))


def test_a_shape_outside_the_profile_is_engine_run_failed() -> None:
    plan = _plan([TensorSpec("y", DataType.FLOAT, ("batch", 6))], lambda f: {"y": f["x"]})
    runner = TrtRunner(plan, H100, TorchBuffers("cpu"))
    with pytest.raises(BuildError) as caught:
        runner.run({"x": np.zeros((9, 6), dtype=np.float32)})
    assert (caught.value.reason, caught.value.kind) == ("EngineRunFailed", "infrastructure")
    assert "outside the engine's profile" in caught.value.message
    assert "setInputShape" in caught.value.message  # TensorRT's own line


def test_runtime_without_cuda_is_gpu_unavailable() -> None:
    plan = _plan([TensorSpec("y", DataType.FLOAT, ("batch", 6))], lambda f: {"y": f["x"]})
    state.no_cuda = True
    with pytest.raises(BuildError) as caught:
        TrtRunner(plan, H100, TorchBuffers("cpu"))
    assert caught.value.reason == "GpuUnavailable"
    assert "factory function returned nullptr" in caught.value.message


def test_unreadable_plan_and_missing_context_are_reported() -> None:
    with pytest.raises(BuildError, match="cannot deserialize"):
        TrtRunner(b"not a plan", H100, TorchBuffers("cpu"))
    plan = _plan([TensorSpec("y", DataType.FLOAT, ("batch", 6))], lambda f: {"y": f["x"]})
    state.no_context = True
    with pytest.raises(BuildError) as caught:
        TrtRunner(plan, H100, TorchBuffers("cpu"))
    assert caught.value.reason == "EngineRunFailed"
    assert "out of device memory" in caught.value.message


def test_types_without_a_host_twin_are_refused() -> None:
    assert torch_dtype_name(DataType.BF16, "y") == "bfloat16"
    assert torch_dtype_name(DataType.HALF, "y") == "float16"
    with pytest.raises(BuildError, match="FP8"):
        torch_dtype_name(DataType.FP8, "y")


def test_output_memory_grows_only_when_asked_for_more() -> None:
    memory = OutputMemory(TorchBuffers("cpu"))
    first = memory.reallocate(64)
    assert memory.reallocate(32) == first
    assert memory.reallocate(0) == first
    memory.reallocate(4096)
    assert memory.size == 4096
    memory.notify((2, 3))
    assert memory.shape == (2, 3)
