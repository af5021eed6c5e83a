"""Shape ranges against a model's dims: defaults, shared dims, errors, and TensorRT's profile."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops_builder.errors import BuildError
from modelops_builder.shapes import (
    DEFAULT_DYNAMIC_RANGE,
    InputDims,
    gate_points,
    plan_shapes,
    profile_shapes,
)
from modelops_contract.shapes import ShapeRange

# A BERT-like signature: ids and mask share the sequence dim "s1"; an image-like input with
# fixed channels and two anonymous dynamic dims.
IDS = InputDims("input_ids", ("s1",))
MASK = InputDims("attention_mask", ("s1",))
PIXELS = InputDims("pixels", (3, None, None))


def rng(name: str, **bounds: Any) -> ShapeRange:
    return ShapeRange.model_validate({"name": name, **bounds})


@pytest.mark.parametrize(
    ("inputs", "requested", "expected"),
    [
        # only a max: min 1 on dynamic dims, opt = max
        ([IDS], [rng("input_ids", max=[128])], {"input_ids": ((1,), (128,), (128,))}),
        # every bound
        (
            [IDS],
            [rng("input_ids", min=[4], opt=[64], max=[128])],
            {"input_ids": ((4,), (64,), (128,))},
        ),
        # one range for a dim two inputs share
        (
            [IDS, MASK],
            [rng("input_ids", opt=[32], max=[64])],
            {"input_ids": ((1,), (32,), (64,)), "attention_mask": ((1,), (32,), (64,))},
        ),
        # fixed dims keep their size, min defaults to it
        (
            [PIXELS],
            [rng("pixels", opt=[3, 64, 64], max=[3, 224, 224])],
            {"pixels": ((3, 1, 1), (3, 64, 64), (3, 224, 224))},
        ),
        # nothing requested: the default range on dynamic dims
        (
            [IDS, InputDims("x", (8,))],
            None,
            {"input_ids": tuple((d,) for d in DEFAULT_DYNAMIC_RANGE), "x": ((8,), (8,), (8,))},
        ),
    ],
)
def test_plans(
    inputs: list[InputDims],
    requested: list[ShapeRange] | None,
    expected: dict[str, tuple[tuple[int, ...], ...]],
) -> None:
    plan = plan_shapes(inputs, requested)
    got = {
        name: (plan.at("min")[name], plan.at("opt")[name], plan.at("max")[name])
        for name in expected
    }
    assert got == expected


@pytest.mark.parametrize(
    ("inputs", "requested", "reason", "fragment"),
    [
        ([IDS], [rng("ids", max=[8])], "InvalidShapeRange", "'ids' is not an input"),
        ([IDS], [rng("input_ids", max=[8, 8])], "InvalidShapeRange", "has 2 dims"),
        ([PIXELS], [rng("pixels", max=[4, 8, 8])], "InvalidShapeRange", "fixed at 3"),
        (
            [IDS, MASK],
            [rng("input_ids", max=[64]), rng("attention_mask", max=[128])],
            "InvalidShapeRange",
            "share the dynamic dim 's1'",
        ),
    ],
)
def test_bad_ranges_name_the_input_and_the_fix(
    inputs: list[InputDims], requested: list[ShapeRange], reason: str, fragment: str
) -> None:
    with pytest.raises(BuildError) as caught:
        plan_shapes(inputs, requested)
    assert caught.value.reason == reason
    assert fragment in caught.value.message
    assert "spec.build.shapes" in caught.value.message


def test_opt_outside_min_max_is_refused_by_the_request_model() -> None:
    with pytest.raises(ValueError, match=r"opt \[200\] is outside min \[1\] .. max \[128\]"):
        rng("input_ids", min=[1], opt=[200], max=[128])


def test_tensorrt_needs_a_range_for_every_dynamic_dim() -> None:
    with pytest.raises(BuildError) as caught:
        plan_shapes([IDS, PIXELS], [rng("input_ids", max=[64])], require_ranges=True)
    assert caught.value.reason == "ShapeRangeRequired"
    assert "'pixels'" in caught.value.message
    # A range given through a shared dim counts for every input sharing it.
    plan_shapes([IDS, MASK], [rng("attention_mask", max=[64])], require_ranges=True)


def test_profile_shapes_are_what_tensorrt_gets() -> None:
    plan = plan_shapes(
        [IDS, MASK, PIXELS],
        [
            rng("input_ids", min=[2], opt=[64], max=[128]),
            rng("pixels", min=[3, 8, 8], max=[3, 32, 32]),
        ],
    )
    assert profile_shapes(plan, max_batch=16, opt_batch=4) == {
        "input_ids": ((1, 2), (4, 64), (16, 128)),
        "attention_mask": ((1, 2), (4, 64), (16, 128)),
        "pixels": ((1, 3, 8, 8), (4, 3, 32, 32), (16, 3, 32, 32)),
    }
    # An opt batch above max is clamped, as the batch profile always was.
    assert profile_shapes(plan, max_batch=2, opt_batch=8)["input_ids"][1] == (2, 64)


def test_gate_runs_each_distinct_shape_at_each_batch() -> None:
    dynamic = plan_shapes([IDS], [rng("input_ids", opt=[16], max=[32])])
    assert gate_points(dynamic, [1, 4]) == [
        ("min", 1),
        ("min", 4),
        ("opt", 1),
        ("opt", 4),
        ("max", 1),
        ("max", 4),
    ]
    fixed = plan_shapes([InputDims("x", (3, 8))], None)
    assert fixed.labels() == ["opt"]
    assert gate_points(fixed, [1, 8]) == [("opt", 1), ("opt", 8)]
    opt_is_max = plan_shapes([IDS], [rng("input_ids", max=[32])])
    assert opt_is_max.labels() == ["min", "opt"]


def test_resolved_ranges_round_trip_as_requests() -> None:
    plan = plan_shapes([IDS, PIXELS], [rng("input_ids", max=[64])])
    ranges = plan.ranges()
    assert [r.name for r in ranges] == ["input_ids", "pixels"]
    assert plan_shapes([IDS, PIXELS], ranges).shapes == plan.shapes


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[InputDims], list[ShapeRange]]:
    """Inputs sharing symbols, fixed and anonymous dims, and valid ranges for some of them."""
    symbols = ["s0", "s1", "s2"]
    inputs = [
        InputDims(
            f"in{i}",
            tuple(
                draw(
                    st.lists(
                        st.one_of(st.sampled_from(symbols), st.integers(1, 8), st.none()),
                        min_size=1,
                        max_size=4,
                    )
                )
            ),
        )
        for i in range(draw(st.integers(1, 3)))
    ]
    symbol_range = {
        s: sorted(draw(st.lists(st.integers(1, 512), min_size=3, max_size=3))) for s in symbols
    }
    ranges = []
    for model_input in inputs:
        if not draw(st.booleans()):
            continue
        triples = []
        for dim in model_input.dims:
            if isinstance(dim, int):
                triples.append((dim, dim, dim))
            elif isinstance(dim, str):
                triples.append(tuple(symbol_range[dim]))
            else:
                triples.append(
                    tuple(sorted(draw(st.lists(st.integers(1, 512), min_size=3, max_size=3))))
                )
        ranges.append(
            ShapeRange(
                name=model_input.name,
                min=[t[0] for t in triples] if draw(st.booleans()) else None,
                opt=[t[1] for t in triples],
                max=[t[2] for t in triples],
            )
        )
    return inputs, ranges


@settings(max_examples=200, deadline=None)
@given(requests(), st.integers(1, 64), st.integers(1, 64))
def test_every_plan_is_ordered_consistent_and_keeps_fixed_dims(
    case: tuple[list[InputDims], list[ShapeRange]], max_batch: int, opt_batch: int
) -> None:
    inputs, ranges = case
    plan = plan_shapes(inputs, ranges)
    by_symbol: dict[str, set[tuple[int, int, int]]] = {}
    for model_input in inputs:
        low, opt, high = (plan.at(label)[model_input.name] for label in ("min", "opt", "max"))
        for axis, dim in enumerate(model_input.dims):
            assert 1 <= low[axis] <= opt[axis] <= high[axis]
            if isinstance(dim, int):
                assert low[axis] == opt[axis] == high[axis] == dim
            if isinstance(dim, str):
                by_symbol.setdefault(dim, set()).add((low[axis], opt[axis], high[axis]))
    assert all(len(triples) == 1 for triples in by_symbol.values())  # a shared dim is one dim
    for lo, mid, hi in profile_shapes(plan, max_batch, opt_batch).values():
        assert (lo[0], mid[0], hi[0]) == (1, min(opt_batch, max_batch), max_batch)
        assert all(a <= b <= c for a, b, c in zip(lo[1:], mid[1:], hi[1:], strict=True))
