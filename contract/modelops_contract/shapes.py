"""Shape ranges: the dims (without the batch axis) each input takes at the profile's min, opt and
max shapes, and the rule every range must satisfy.

One rule for both sides: the operator's spec validator (spec.build.shapes, mirrored by CEL) and
the builder's request (BuildRequest.shapes) call `range_problem`. What a range means for a given
graph (defaults, shared dynamic dims, fixed dims) is the builder's `shapes` module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from .wire import WireModel

MAX_DIMS = 8
MAX_DIM = 1_048_576
ShapeLabel = Literal["min", "opt", "max"]
SHAPE_LABELS: tuple[ShapeLabel, ...] = ("min", "opt", "max")


def describe_dims(dims: Sequence[int] | None) -> str:
    """`[1, 128]`, or `(default)` when a bound is not given."""
    return "(default)" if dims is None else f"[{', '.join(str(d) for d in dims)}]"


def range_problem(
    low: Sequence[int] | None, opt: Sequence[int] | None, high: Sequence[int]
) -> str | None:
    """What is wrong with a min/opt/max triple of dims, or None: same length, min <= opt <= max
    dim by dim. Absent bounds are not compared (their defaults always fit)."""
    for name, dims in (("min", low), ("opt", opt)):
        if dims is not None and len(dims) != len(high):
            return (
                f"{name} {describe_dims(dims)} has {len(dims)} dims, max {describe_dims(high)} "
                f"has {len(high)}"
            )
    for axis, top in enumerate(high):
        bottom = low[axis] if low is not None else None
        middle = opt[axis] if opt is not None else None
        if bottom is not None and bottom > top:
            return f"min {describe_dims(low)} exceeds max {describe_dims(high)} at dim {axis}"
        if middle is not None and (middle > top or (bottom is not None and middle < bottom)):
            return (
                f"opt {describe_dims(opt)} is outside min {describe_dims(low)} .. max "
                f"{describe_dims(high)} at dim {axis}"
            )
    return None


class ShapeRange(WireModel):
    """One input's dims (batch axis excluded) at the profile's min, opt and max shapes.

    Only `max` is required: `min` defaults to 1 on the graph's dynamic dims (the fixed size
    elsewhere) and `opt` to `max`, as the batch axis does (min 1, opt = optBatchSize or max).
    """

    name: str = Field(max_length=128)
    min: list[int] | None = Field(default=None, max_length=MAX_DIMS)
    opt: list[int] | None = Field(default=None, max_length=MAX_DIMS)
    max: list[int] = Field(max_length=MAX_DIMS)

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        dims = [*(self.min or []), *(self.opt or []), *self.max]
        if any(d < 1 or d > MAX_DIM for d in dims):
            raise ValueError(f"shapes '{self.name}': every dim must be 1..{MAX_DIM}")
        problem = range_problem(self.min, self.opt, self.max)
        if problem:
            raise ValueError(f"shapes '{self.name}': {problem}")
        return self

    def key_material(self) -> dict[str, object]:
        """What the engine key hashes: every bound, None where defaulted."""
        return {"name": self.name, "min": self.min, "opt": self.opt, "max": self.max}
