"""Shape ranges against the model: every dynamic dim gets its min, opt and max (pure, no I/O).

The request's `shapes` give some inputs' dims (batch excluded) at the profile's min/opt/max; the
graph says which dims are fixed, which are dynamic, and which dynamic dims are one and the same
(ONNX dim_params and torch.export symbols are shared by name, e.g. `input_ids` and
`attention_mask` both have the sequence dim `s1`). `plan_shapes` combines the two:

- a fixed dim keeps its size (a range that says otherwise is an error);
- a dynamic dim takes its range from the request: min defaults to 1 and opt to max, as the
  batch axis does;
- a range given for one input applies to every input sharing the dim; two inputs giving the
  same dim different ranges is an error;
- a dynamic dim nobody gave a range gets DEFAULT_DYNAMIC_RANGE, except for TensorRT, whose
  engine accepts only the profile's range: there it is an error naming the input and the fix.

`profile_shapes` turns a plan into the full (batch included) min/opt/max shapes per input that
TensorRT's optimisation profile takes; the gate runs every distinct shape at batch 1, opt and
max, the profiler the opt shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelops_contract.shapes import SHAPE_LABELS, ShapeLabel, ShapeRange, describe_dims

from .errors import BuildError

# A dim the graph names: an int is fixed, a str a named dynamic dim shared by every input
# naming it, None an anonymous dynamic dim.
Dim = int | str | None
Triple = tuple[int, int, int]
FullShape = tuple[int, ...]
# (min, opt, max) of one input's full shape, batch axis first: one TensorRT optimisation profile
ProfileShape = tuple[FullShape, FullShape, FullShape]
# Without a range, a dynamic dim is gated at 1 and 16 and profiled at 16.
DEFAULT_DYNAMIC_RANGE: Triple = (1, 16, 16)


@dataclass(frozen=True)
class InputDims:
    """One input's dims as the graph gives them, batch axis excluded."""

    name: str
    dims: tuple[Dim, ...]


@dataclass(frozen=True)
class ShapePlan:
    """Every input's dims (batch excluded) at the min, opt and max shapes."""

    shapes: Mapping[ShapeLabel, Mapping[str, FullShape]]

    def at(self, label: ShapeLabel) -> dict[str, FullShape]:
        """Each input's dims at one of the three shapes."""
        return dict(self.shapes[label])

    def labels(self) -> list[ShapeLabel]:
        """The distinct shapes, in min/opt/max order: a model without dynamic dims has one."""
        distinct: list[ShapeLabel] = []
        for label in SHAPE_LABELS:
            if label == "opt" or all(self.at(label) != self.at(d) for d in ("opt", *distinct)):
                distinct.append(label)
        return distinct

    def ranges(self) -> list[ShapeRange]:
        """The resolved ranges (for engine.json), one per input."""
        return [
            ShapeRange(
                name=name,
                min=list(self.shapes["min"][name]),
                opt=list(self.shapes["opt"][name]),
                max=list(self.shapes["max"][name]),
            )
            for name in self.shapes["opt"]
        ]


def _fail(message: str, reason: str = "InvalidShapeRange") -> BuildError:
    return BuildError(reason, message + " (spec.build.shapes; dims exclude the batch axis)")


# A range as requested for one dynamic dim: (min or None, opt or None, max).
Bounds = tuple[int | None, int | None, int]


def _requested_bounds(model_input: InputDims, shape: ShapeRange) -> dict[int, Bounds]:
    """Axis -> the bounds a request gives for each dynamic dim; fixed dims checked."""
    if len(shape.max) != len(model_input.dims):
        raise _fail(
            f"input '{shape.name}': max {describe_dims(shape.max)} has {len(shape.max)} dims, "
            f"the model's input has {len(model_input.dims)} ({_show(model_input.dims)})"
        )
    bounds: dict[int, Bounds] = {}
    for axis, dim in enumerate(model_input.dims):
        high = shape.max[axis]
        opt = shape.opt[axis] if shape.opt is not None else None
        low = shape.min[axis] if shape.min is not None else None
        if isinstance(dim, int):
            if {high, opt or dim, low or dim} != {dim}:
                raise _fail(
                    f"input '{shape.name}': dim {axis} is fixed at {dim} in the model, the range "
                    f"gives min {low or '-'}, opt {opt or '-'}, max {high}: give {dim} there"
                )
            continue
        bounds[axis] = (low, opt, high)
    return bounds


def _merge(first: Bounds, second: Bounds) -> Bounds | None:
    """Two requests for one shared dim, bound by bound; None when a bound disagrees."""
    merged = []
    for a, b in zip(first, second, strict=True):
        if a is not None and b is not None and a != b:
            return None
        merged.append(a if a is not None else b)
    low, opt, high = merged
    assert high is not None  # max is always given
    return low, opt, high


def _resolve(name: str, axis: int, bounds: Bounds) -> Triple:
    """Defaults (min 1, opt = max), then min <= opt <= max."""
    low, opt, high = bounds
    triple = (low if low is not None else 1, opt if opt is not None else high, high)
    if not triple[0] <= triple[1] <= triple[2]:
        raise _fail(
            f"input '{name}': dim {axis} needs min {triple[0]} <= opt {triple[1]} <= max {high}"
        )
    return triple


def _show(dims: Sequence[Dim]) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int | str) else "?" for d in dims) + "]"


def plan_shapes(
    inputs: Sequence[InputDims],
    requested: Sequence[ShapeRange] | None,
    *,
    require_ranges: bool = False,
) -> ShapePlan:
    """Resolve the request's ranges against the graph's dims; InvalidShapeRange when they
    disagree, ShapeRangeRequired when `require_ranges` (TensorRT) and a dynamic dim has none."""
    by_name = {i.name: i for i in inputs}
    given: dict[tuple[str, int], Bounds] = {}
    for shape in requested or []:
        if shape.name not in by_name:
            raise _fail(
                f"'{shape.name}' is not an input of the model (its inputs: {', '.join(by_name)})"
            )
        for axis, bounds in _requested_bounds(by_name[shape.name], shape).items():
            given[(shape.name, axis)] = bounds
    # A named dim shared by several inputs takes the bounds any of them gives; a bound two
    # inputs give differently is an error (an absent bound defers to the other's).
    by_symbol: dict[str, tuple[str, Bounds]] = {}
    for (name, axis), bounds in given.items():
        symbol = by_name[name].dims[axis]
        if not isinstance(symbol, str):
            continue
        seen = by_symbol.setdefault(symbol, (name, bounds))
        merged = _merge(seen[1], bounds)
        if merged is None:
            raise _fail(
                f"inputs '{seen[0]}' and '{name}' share the dynamic dim '{symbol}' but give it "
                f"different ranges {list(seen[1])} and {list(bounds)} (min, opt, max): give "
                "both the same"
            )
        by_symbol[symbol] = (seen[0], merged)
    shapes: dict[ShapeLabel, dict[str, FullShape]] = {label: {} for label in SHAPE_LABELS}
    for model_input in inputs:
        per_axis: list[Triple] = []
        for axis, dim in enumerate(model_input.dims):
            found = given.get((model_input.name, axis))
            if isinstance(dim, str) and dim in by_symbol:
                found = by_symbol[dim][1]
            if isinstance(dim, int):
                per_axis.append((dim, dim, dim))
                continue
            if found is not None:
                per_axis.append(_resolve(model_input.name, axis, found))
                continue
            if require_ranges:
                raise _fail(
                    f"input '{model_input.name}' has the dynamic dim {axis} "
                    f"({_show(model_input.dims)}) and engine tensorrt accepts only the sizes "
                    f"of its profile: add {{name: {model_input.name}, max: [...]}}",
                    "ShapeRangeRequired",
                )
            per_axis.append(DEFAULT_DYNAMIC_RANGE)
        for index, label in enumerate(SHAPE_LABELS):
            shapes[label][model_input.name] = tuple(t[index] for t in per_axis)
    return ShapePlan(shapes)


def profile_shapes(plan: ShapePlan, max_batch: int, opt_batch: int) -> dict[str, ProfileShape]:
    """Per input, the full (batch first) min, opt and max shapes of TensorRT's profile: batch 1
    at min, the opt batch at opt, the max batch at max."""
    batches = {"min": 1, "opt": min(opt_batch, max_batch), "max": max_batch}
    low, opt, high = (
        {name: (batches[label], *dims) for name, dims in plan.at(label).items()}
        for label in SHAPE_LABELS
    )
    return {name: (low[name], opt[name], high[name]) for name in plan.at("opt")}


def gate_points(plan: ShapePlan, batches: Sequence[int]) -> list[tuple[ShapeLabel, int]]:
    """(shape, batch) pairs the gate runs: every distinct shape at every gate batch."""
    return [(label, batch) for label in plan.labels() for batch in batches]
