"""spec.build.shapes: the min/opt/max dims of each input's dynamic dims (CEL + pydantic)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from modelops_contract.shapes import MAX_DIM, MAX_DIMS, range_problem
from modelops_contract.wire import WireModel

from . import rules
from .base import cel

ShapeDim = Annotated[int, Field(ge=1, le=MAX_DIM)]
TENSOR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"


def _each_dim(low: str, high: str) -> str:
    """CEL: self.<low>[i] <= self.<high>[i] for every i < size(self.max), unrolled (Kubernetes
    CEL has no list index range before 1.33, and a list here holds at most MAX_DIMS dims)."""
    return " && ".join(
        f"(size(self.max) <= {i} || self.{low}[{i}] <= self.{high}[{i}])" for i in range(MAX_DIMS)
    )


RULE_MIN = f"!has(self.min) || (size(self.min) == size(self.max) && {_each_dim('min', 'max')})"
RULE_OPT = (
    f"!has(self.opt) || (size(self.opt) == size(self.max) && {_each_dim('opt', 'max')} && "
    f"(!has(self.min) || size(self.min) != size(self.max) || {_each_dim('min', 'opt')}))"
)


class ShapeRangeSpec(WireModel):
    """One input's dims (batch axis excluded) at the engine profile's min, opt and max shapes."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(RULE_MIN, rules.MSG_SHAPE_MIN, ".min"),
                cel(RULE_OPT, rules.MSG_SHAPE_OPT, ".opt"),
            ]
        }
    )

    name: str = Field(
        max_length=128, pattern=TENSOR_NAME_PATTERN, description="The input, as the model names it."
    )
    min: list[ShapeDim] | None = Field(
        default=None,
        max_length=MAX_DIMS,
        description="Smallest dims; default 1 on the model's dynamic dims, its size elsewhere.",
    )
    opt: list[ShapeDim] | None = Field(
        default=None,
        max_length=MAX_DIMS,
        description="Dims TensorRT optimises for and the profiler measures; default max.",
    )
    max: list[ShapeDim] = Field(
        max_length=MAX_DIMS, description="Largest dims an inference may have, e.g. [512]."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRangeSpec:
        problem = range_problem(self.min, self.opt, self.max)
        if problem:
            message = rules.MSG_SHAPE_OPT if problem.startswith("opt") else rules.MSG_SHAPE_MIN
            raise ValueError(f"{message}: input '{self.name}': {problem}")
        return self
