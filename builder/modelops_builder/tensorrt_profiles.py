"""The optimisation profile of a build: min/opt/max shape of every input, batch axis included.

PURE: no tensorrt, no I/O. `profile_shapes` is the one place that decides the shapes TensorRT
builds for; build_plan receives its result as it is. The batch axis runs from 1 through the
opt batch to the max batch. Other dynamic dims take `ranges` when given (per input: min/opt/max
dims without batch, from the large-models work); without ranges they are pinned to
DEFAULT_DYNAMIC_DIM, the size the gate and the profiler feed, so the engine is built for exactly
the shapes it is checked with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelops_contract.request import TensorSig

from .errors import BuildError
from .export import DEFAULT_DYNAMIC_DIM

Shape = tuple[int, ...]
ProfileShape = tuple[Shape, Shape, Shape]  # (min, opt, max), batch axis first


@dataclass(frozen=True)
class DimRange:
    """min/opt/max of one input's dims without the batch axis; -1 in the signature is free."""

    min: Shape
    opt: Shape
    max: Shape


def _default_dims(sig: TensorSig) -> Shape:
    return tuple(d if d > 0 else DEFAULT_DYNAMIC_DIM for d in sig.dims)


def _checked_range(sig: TensorSig, dims: DimRange) -> DimRange:
    """The range itself, after checking it fits the signature: InvalidRequest otherwise."""
    where = f"input '{sig.name}' {sig.dims}"
    for label, shape in (("min", dims.min), ("opt", dims.opt), ("max", dims.max)):
        if len(shape) != len(sig.dims):
            raise BuildError(
                "InvalidRequest", f"{where}: {label} {list(shape)} has another number of dims"
            )
    for axis, fixed in enumerate(sig.dims):
        low, mid, high = dims.min[axis], dims.opt[axis], dims.max[axis]
        if not 1 <= low <= mid <= high:
            raise BuildError(
                "InvalidRequest",
                f"{where}: dim {axis + 1} needs 1 <= min <= opt <= max, got {low}/{mid}/{high}",
            )
        if fixed > 0 and not low == mid == high == fixed:
            raise BuildError(
                "InvalidRequest",
                f"{where}: dim {axis + 1} is fixed at {fixed}, range gives {low}/{mid}/{high}",
            )
    return dims


def profile_shapes(
    inputs: Sequence[TensorSig],
    max_batch: int,
    opt_batch: int,
    ranges: Mapping[str, DimRange] | None = None,
) -> dict[str, ProfileShape]:
    """{input name: (min, opt, max)} as full shapes, batch first, for one optimisation profile."""
    if max_batch < 1:
        raise BuildError("InvalidRequest", f"max batch size {max_batch} is below 1")
    opt = min(max(opt_batch, 1), max_batch)
    ranges = ranges or {}
    unknown = sorted(set(ranges) - {sig.name for sig in inputs})
    if unknown:
        raise BuildError("InvalidRequest", f"shape ranges for unknown inputs {unknown}")
    shapes: dict[str, ProfileShape] = {}
    for sig in inputs:
        given = ranges.get(sig.name)
        if given is None:
            dims = _default_dims(sig)
            given = DimRange(dims, dims, dims)
        dims_range = _checked_range(sig, given)
        shapes[sig.name] = (
            (1, *dims_range.min),
            (opt, *dims_range.opt),
            (max_batch, *dims_range.max),
        )
    return shapes
