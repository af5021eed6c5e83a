"""profile_shapes: the exact min/opt/max shapes a TensorRT build gets, batch axis included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_builder.errors import BuildError
from modelops_builder.export import DEFAULT_DYNAMIC_DIM
from modelops_builder.tensorrt_profiles import DimRange, profile_shapes
from modelops_contract.request import TensorSig


def sig(name: str, *dims: int, dtype: str = "FP32") -> TensorSig:
    return TensorSig(name=name, data_type=dtype, dims=list(dims))


def test_batch_runs_from_one_through_opt_to_max() -> None:
    shapes = profile_shapes([sig("x", 3, 224, 224)], max_batch=32, opt_batch=8)
    assert shapes == {"x": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}


def test_opt_batch_is_clamped_into_one_to_max() -> None:
    assert profile_shapes([sig("x", 4)], 8, 64)["x"][1] == (8, 4)
    assert profile_shapes([sig("x", 4)], 8, 0)["x"][1] == (1, 4)


def test_dynamic_non_batch_dims_take_the_default_without_ranges() -> None:
    shapes = profile_shapes([sig("ids", -1, dtype="INT64"), sig("mask", -1, 2)], 4, 2)
    dim = DEFAULT_DYNAMIC_DIM
    assert shapes["ids"] == ((1, dim), (2, dim), (4, dim))
    assert shapes["mask"] == ((1, dim, 2), (2, dim, 2), (4, dim, 2))


def test_ranges_widen_dynamic_dims_per_input() -> None:
    inputs = [sig("ids", -1, dtype="INT64"), sig("mask", -1, dtype="INT64")]
    ranges = {"ids": DimRange((1,), (128,), (512,))}
    shapes = profile_shapes(inputs, max_batch=8, opt_batch=4, ranges=ranges)
    assert shapes["ids"] == ((1, 1), (4, 128), (8, 512))
    # An input without a range keeps the default: the gate feeds it DEFAULT_DYNAMIC_DIM.
    dim = DEFAULT_DYNAMIC_DIM
    assert shapes["mask"] == ((1, dim), (4, dim), (8, dim))


@pytest.mark.parametrize(
    ("dims_range", "message"),
    [
        (DimRange((1, 3), (2, 3), (4, 3)), "another number of dims"),
        (DimRange((4,), (2,), (8,)), "min <= opt <= max"),
        (DimRange((0,), (2,), (8,)), "min <= opt <= max"),
    ],
)
def test_bad_ranges_are_invalid_requests(dims_range: DimRange, message: str) -> None:
    with pytest.raises(BuildError) as caught:
        profile_shapes([sig("ids", -1)], 8, 4, {"ids": dims_range})
    assert caught.value.reason == "InvalidRequest"
    assert message in caught.value.message


def test_a_range_cannot_move_a_fixed_dim() -> None:
    with pytest.raises(BuildError, match="fixed at 3"):
        profile_shapes([sig("x", 3, -1)], 8, 4, {"x": DimRange((1, 1), (3, 8), (3, 16))})
    fixed = profile_shapes([sig("x", 3, -1)], 8, 4, {"x": DimRange((3, 1), (3, 8), (3, 16))})
    assert fixed["x"] == ((1, 3, 1), (4, 3, 8), (8, 3, 16))


def test_ranges_for_unknown_inputs_are_refused() -> None:
    with pytest.raises(BuildError, match="unknown inputs"):
        profile_shapes([sig("x", 4)], 8, 4, {"y": DimRange((1,), (1,), (1,))})


@given(
    dims=st.lists(st.sampled_from([-1, 1, 3, 7]), min_size=0, max_size=4),
    max_batch=st.integers(1, 64),
    opt_batch=st.integers(-2, 80),
)
def test_every_profile_is_one_tensorrt_accepts(
    dims: list[int], max_batch: int, opt_batch: int
) -> None:
    """min <= opt <= max element-wise, fixed dims kept, batch 1 / opt / max (set_shape's rules)."""
    (low, opt, high) = profile_shapes([sig("x", *dims)], max_batch, opt_batch)["x"]
    assert len(low) == len(opt) == len(high) == len(dims) + 1
    assert all(1 <= a <= b <= c for a, b, c in zip(low, opt, high, strict=True))
    assert (low[0], high[0]) == (1, max_batch)
    for axis, dim in enumerate(dims, start=1):
        if dim > 0:
            assert low[axis] == opt[axis] == high[axis] == dim
