"""fp16: convert the ONNX graph itself (TensorRT 11 is strongly typed), then prove it converted.

The builder's own converter, because a graph-level rule is easy to state and to check:

- every node runs in fp16 except the numerically sensitive ones in KEEP_FP32 (normalisations,
  softmax, reductions, exp/log/pow, ranges and resampling): those read fp32 and write fp32;
- each value has one type; where a node needs the other one, a Cast is inserted once per
  (value, type) and shared by every node that needs it;
- a graph output keeps its declared type (fp32 unless the request asks for FP16 I/O): when
  it is produced in the other type, the producer writes an internal name and a Cast writes the
  output, so a value that is both a graph output and another node's input (`sum` feeding
  `prob = Sigmoid(sum)`) stays consistent;
- a weight or constant becomes fp16 only when every node reading it runs in fp16 (values
  clipped to fp16's finite range), else it stays fp32;
- weights are converted one tensor at a time from their external-data file into a new one, so
  a model is never held in memory; graphs without external data stay single-file.
Graphs with control flow (If/Loop/Scan subgraphs) are refused: their subgraphs read outer
values by name, which a per-graph rewrite cannot retype safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import BuildError
from .onnx_files import (
    DATA_SUFFIX,
    DataWriter,
    data_span,
    external_info,
    external_tensors,
    load_graph,
    save_graph,
    tensor_bytes,
)

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)
KEEP_FP32 = frozenset((
    # normalisations and softmax: sums of squares and exponentials overflow fp16
    "LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
    "GroupNormalization", "InstanceNormalization", "LpNormalization", "MeanVarianceNormalization",
    "Softmax", "LogSoftmax",
    # reductions and running sums: long sums lose fp16's 11 bits
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceProd", "CumSum",
    # exp/log/pow: overflow and underflow
    "Exp", "Log", "Pow",
    # index and coordinate maths, sampling: fp16 cannot count past 2048 exactly
    "Range", "Resize", "Upsample", "TopK", "NonMaxSuppression", "RoiAlign", "RandomNormal",
    "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
))  # fmt: skip
# Ops that accept any input type: their inputs are never cast.
ANY_INPUT = frozenset({"Cast", "Shape", "Size"})


@dataclass(frozen=True)
class PrecisionReport:
    """How much of the graph's float data is fp16 after conversion."""

    fp16_initializers: int
    fp32_initializers: int
    fp16_values: int
    fp32_values: int

    def detail(self) -> str:
        """One line for the progress display."""
        return (
            f"{self.fp16_initializers} fp16 / {self.fp32_initializers} fp32 weights, "
            f"{self.fp16_values} fp16 / {self.fp32_values} fp32 activations"
        )


def _value_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}
    types |= {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    types |= {t.name: t.data_type for t in graph.initializer}
    return types


@dataclass
class _Converter:
    """One pass over a graph: node modes, value types, casts, renamed outputs."""

    original: dict[str, int]
    keep_fp32: frozenset[str]
    io_type: int
    current: dict[str, int] = field(default_factory=dict)
    casts: dict[tuple[str, int], str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    values: dict[int, int] = field(default_factory=lambda: {FLOAT: 0, HALF: 0})

    def is_float(self, name: str) -> bool:
        return self.original.get(name) == FLOAT

    def mode(self, node: onnx.NodeProto) -> int:
        sensitive = node.op_type in self.keep_fp32 or node.domain not in ("", "ai.onnx")
        return FLOAT if sensitive else HALF

    def cast(self, name: str, to: int) -> str:
        """`name` as type `to`: itself, or a Cast's output created once and shared."""
        source = self.renamed.get(name, name)
        if self.current.get(source, FLOAT) == to:
            return source
        key = (source, to)
        if key not in self.casts:
            target = f"{source}__modelops_{'fp16' if to == HALF else 'fp32'}"
            self.nodes.append(helper.make_node("Cast", [source], [target], to=to))
            self.current[target] = to
            self.casts[key] = target
        return self.casts[key]

    def visit(self, node: onnx.NodeProto, outputs: set[str], constant_fp16: set[str]) -> None:
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            raise BuildError(
                "PrecisionConversionFailed",
                f"node '{node.name or node.op_type}' ({node.op_type}) has a subgraph: fp16 "
                "conversion of control flow is not supported; build precision fp32",
            )
        mode = self.mode(node)
        if node.op_type not in ANY_INPUT:
            node.input[:] = [
                self.cast(i, mode) if i and self.is_float(i) else self.renamed.get(i, i)
                for i in node.input
            ]
        else:
            node.input[:] = [self.renamed.get(i, i) for i in node.input]
        self.nodes.append(node)
        for index, name in enumerate(node.output):
            if not self.is_float(name):
                continue
            produced = self._produced_type(node, mode, name, constant_fp16)
            self.values[produced] += 1
            if name in outputs and produced != self.io_type:
                internal = f"{name}__modelops_{'fp16' if produced == HALF else 'fp32'}"
                node.output[index] = internal
                self.current[internal] = produced
                self.renamed[name] = internal
                self.nodes.append(helper.make_node("Cast", [internal], [name], to=self.io_type))
                self.current[name] = self.io_type
                # Later readers of the output read the internal value (and cast from there).
                continue
            self.current[name] = produced

    def _produced_type(
        self, node: onnx.NodeProto, mode: int, name: str, constant_fp16: set[str]
    ) -> int:
        if node.op_type == "Cast":
            return next(a.i for a in node.attribute if a.name == "to")
        if node.op_type in ("Constant", "ConstantOfShape"):
            return HALF if name in constant_fp16 else FLOAT
        return mode


def _to_half(array: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    # Beyond fp16's range a weight would become inf; clipping keeps e.g. -1e9 attention masks
    # a very large negative number, which is what they mean.
    return np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)


def _convert_constant_nodes(graph: onnx.GraphProto, constant_fp16: set[str]) -> None:
    for node in graph.node:
        if (
            node.op_type not in ("Constant", "ConstantOfShape")
            or node.output[0] not in constant_fp16
        ):
            continue
        for attribute in node.attribute:
            if attribute.name == "value" and attribute.t.data_type == FLOAT:
                half = numpy_helper.from_array(_to_half(numpy_helper.to_array(attribute.t)))
                half.name = attribute.t.name
                attribute.t.CopyFrom(half)


def _fp16_readers_only(graph: onnx.GraphProto, converter: _Converter) -> set[str]:
    """Constant values (weights, Constant nodes) every reader of which runs in fp16."""
    readers: dict[str, set[int]] = {}
    for node in graph.node:
        mode = converter.mode(node) if node.op_type not in ANY_INPUT else FLOAT
        for name in node.input:
            readers.setdefault(name, set()).add(mode)
    outputs = {o.name for o in graph.output}
    constants = [t.name for t in graph.initializer if t.data_type == FLOAT]
    constants += [
        n.output[0]
        for n in graph.node
        if n.op_type in ("Constant", "ConstantOfShape") and converter.is_float(n.output[0])
    ]
    return {c for c in constants if readers.get(c) == {HALF} and c not in outputs}


def convert_fp16(
    src: Path,
    dst: Path,
    *,
    keep_io_types: bool = True,
    keep_fp32: frozenset[str] = KEEP_FP32,
) -> PrecisionReport:
    """Write the fp16 version of `src` to `dst` (+ `dst.data` when `src` has external data)."""
    model = load_graph(src)
    graph = model.graph
    converter = _Converter(_value_types(model), keep_fp32, FLOAT if keep_io_types else HALF)
    constant_fp16 = _fp16_readers_only(graph, converter)
    writer = DataWriter(dst.with_name(dst.name + DATA_SUFFIX))
    counts = {FLOAT: 0, HALF: 0}
    try:
        for tensor in graph.initializer:
            if tensor.data_type != FLOAT or tensor.name not in constant_fp16:
                counts[FLOAT] += tensor.data_type == FLOAT
                continue
            half = _to_half(tensor_bytes(tensor, src.parent))
            tensor.data_type = HALF
            tensor.ClearField("float_data")
            counts[HALF] += 1
            if tensor.data_location == TensorProto.EXTERNAL:
                writer.write(tensor, half.tobytes())
            else:
                tensor.raw_data = half.tobytes()
        # Whatever else lives in the source's data files moves to the new one, streaming.
        for tensor in external_tensors(model):
            if external_info(tensor).get("location") != writer.path.name:
                writer.copy(tensor, *data_span(tensor, src.parent))
        for value in graph.input:
            if converter.is_float(value.name):
                value.type.tensor_type.elem_type = converter.io_type
                converter.current[value.name] = converter.io_type
        for name in constant_fp16:
            converter.current[name] = HALF
        _convert_constant_nodes(graph, constant_fp16)
        outputs = {o.name for o in graph.output}
        for node in list(graph.node):
            converter.visit(node, outputs, constant_fp16)
    except BaseException:
        writer.close()
        raise
    del graph.node[:]
    graph.node.extend(converter.nodes)
    for value in graph.output:
        if converter.is_float(value.name):
            value.type.tensor_type.elem_type = converter.io_type
    del graph.value_info[:]  # stale fp32 types would contradict the new ones
    files = save_graph(model, dst, writer)
    try:
        onnx.checker.check_model(str(dst))
    except Exception as exc:  # the checker raises ValidationError and others
        raise BuildError("PrecisionConversionFailed", f"fp16 graph is invalid: {exc}") from exc
    report = PrecisionReport(
        counts[HALF], counts[FLOAT], converter.values[HALF], converter.values[FLOAT]
    )
    # A graph with no fp16 weights and no fp16 activations was not converted at all: serving it
    # as "fp16" would be a lie the gate cannot catch (it would pass with fp32 accuracy).
    if report.fp16_initializers == 0 and report.fp16_values == 0:
        for name in files:
            (dst.parent / name).unlink(missing_ok=True)
        raise BuildError(
            "PrecisionConversionFailed",
            f"fp16 requested but nothing in the graph was converted ({report.detail()})",
        )
    return report
