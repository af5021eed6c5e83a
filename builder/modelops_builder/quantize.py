"""int8: the fp32 graph calibrated into a QDQ graph (ONNX Runtime's static quantization), which
ONNX Runtime runs with int8 kernels and TensorRT builds as an explicitly quantized network.

One policy for the whole graph:
- weights int8, symmetric, per output channel; activations int8 per tensor from the calibration
  set's ranges (minmax, entropy or percentile); symmetric (zero point 0) for TensorRT, which
  takes nothing else (and float biases, which it fuses), asymmetric uint8 for ONNX Runtime
  (its u8s8 kernels use VNNI);
- kept in float: LayerNormalization and Softmax (their outputs span orders of magnitude that one
  int8 scale cannot hold), and a transformer's output head (the last MatMul/Gemm before each
  output: the logits' small differences are the answer), plus what the request adds
  (`keepFloat`: op types or node names, what a failed gate recommends);
- the graph is first prepared as ONNX Runtime recommends (`quant_pre_process`: shape inference
  and constant folding, BatchNorm folded into Conv), so each Conv is quantized with its BN.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from modelops_contract.enums import CalibrationMethod
from modelops_contract.quantization import CalibrationRequest

from .datasets import DataSet
from .errors import BuildError
from .onnx_files import external_tensors, load_graph

log = logging.getLogger(__name__)

DEFAULT_KEEP_OPS = ("LayerNormalization", "SimplifiedLayerNormalization", "Softmax", "LogSoftmax")
# What marks a transformer (whose output head stays in float).
TRANSFORMER_OPS = {"LayerNormalization", "SimplifiedLayerNormalization", "Softmax", "Attention"}
HEAD_OPS = {"MatMul", "Gemm"}
# Between a head's MatMul and the output: ops that move or add, not compute (bias, reshapes).
PASS_THROUGH = {
    "Add",
    "Reshape",
    "Transpose",
    "Cast",
    "Identity",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


@dataclass(frozen=True)
class Quantized:
    """The QDQ graph and what the quantization did."""

    path: Path
    prepared: Path  # the fp32 graph that was quantized (after quant_pre_process)
    quantized_nodes: int
    kept_float: list[str]


class SetReader:
    """onnxruntime's CalibrationDataReader over a data set, in batches (re-readable)."""

    def __init__(self, data: DataSet, batch: int) -> None:
        self.batches = data.batches(batch)
        self._iter: Iterator[dict[str, Any]] = iter(self.batches)

    def get_next(self) -> dict[str, Any] | None:
        """The next batch, or None at the end (the calibrator's protocol)."""
        return next(self._iter, None)

    def rewind(self) -> None:
        """Start again (the calibrator may read twice)."""
        self._iter = iter(self.batches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Every batch (qdq_loss_debug.collect_activations iterates its reader)."""
        return iter(self.batches)


def _name_nodes(path: Path) -> None:
    """Give every node a unique name: exclusion and the report go by name."""
    model = onnx.load(str(path), load_external_data=False)
    seen: set[str] = set()
    changed = False
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
            changed = True
        seen.add(node.name)
    if changed:
        onnx.save(model, str(path))


def transformer_head(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The last MatMul/Gemm before each graph output (through bias adds and reshapes), when the
    graph is a transformer's (it has LayerNorm, Softmax or Attention); else none."""
    if not any(node.op_type in TRANSFORMER_OPS for node in graph.node):
        return []
    producer = {out: node for node in graph.node for out in node.output}
    head: dict[str, onnx.NodeProto] = {}
    for output in graph.output:
        pending, seen = [output.name], set()
        while pending:
            node = producer.get(pending.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in HEAD_OPS:
                head[node.name] = node
            elif node.op_type in PASS_THROUGH:
                if node.op_type == "Add":  # the head's bias: the logits' last rounding
                    head[node.name] = node
                pending.extend(node.input)
    return list(head.values())


def kept_nodes(graph: onnx.GraphProto, keep_float: list[str]) -> list[onnx.NodeProto]:
    """Nodes that stay in float: the default ops, a transformer's head, and `keep_float`."""
    ops = {node.op_type for node in graph.node}
    names = {node.name for node in graph.node}
    unknown = [k for k in keep_float if k not in ops and k not in names]
    if unknown:
        sample = ", ".join(sorted(names)[:5])
        raise BuildError(
            "InvalidRequest",
            f"spec.build.calibration.keepFloat: {unknown} name neither an op type of the graph "
            f"({', '.join(sorted(ops))}) nor a node (e.g. {sample})",
        )
    wanted = set(DEFAULT_KEEP_OPS) | set(keep_float)
    kept = {n.name: n for n in graph.node if n.op_type in wanted or n.name in wanted}
    kept |= {n.name: n for n in transformer_head(graph)}
    return [n for n in graph.node if n.name in kept]


def describe_node(node: onnx.NodeProto) -> str:
    """`/head/MatMul (MatMul)`: how reports name a node."""
    return f"{node.name} ({node.op_type})"


def _prepare(source: Path, dest: Path, external: bool) -> Path:
    """quant_pre_process (shape inference, folding); the graph as it was when that fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(dest), save_as_external_data=external)
        return dest
    except Exception as exc:  # symbolic shape inference gives up on some exported graphs
        log.warning("quant_pre_process failed (%s): quantizing the graph as exported", exc)
        try:
            quant_pre_process(
                str(source), str(dest), skip_symbolic_shape=True, save_as_external_data=external
            )
            return dest
        except Exception as second:
            log.warning("quant_pre_process failed again (%s)", second)
            return source


def quantize_int8(
    source: Path,
    dest: Path,
    calibration: DataSet,
    request: CalibrationRequest,
    *,
    batch: int,
    symmetric_activations: bool,
) -> Quantized:
    """Calibrate `source` (fp32) on `calibration` into the QDQ graph `dest`."""
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    external = bool(external_tensors(load_graph(source)))
    prepared = _prepare(source, dest.with_name("prepared.onnx"), external)
    if prepared != source:  # never rewrite the fp32 graph the reference and baseline read
        _name_nodes(prepared)
    graph = load_graph(prepared).graph
    kept = kept_nodes(graph, list(request.keep_float))
    method = {
        CalibrationMethod.MINMAX: OrtMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
    }[CalibrationMethod(request.method)]
    try:
        quantize_static(
            str(prepared),
            str(dest),
            SetReader(calibration, batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=[n.name for n in kept],
            use_external_data_format=external,
            extra_options={
                "ActivationSymmetric": symmetric_activations,
                "WeightSymmetric": True,
                # TensorRT's explicit quantization takes int8 Q/DQ on activations and weights;
                # biases stay float (it fuses them into the int8 kernels itself).
                "QuantizeBias": not symmetric_activations,
            },
        )
    except BuildError:
        raise
    except Exception as exc:  # onnxruntime's calibrator raises its own errors for odd graphs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise BuildError(
            "PrecisionConversionFailed",
            f"int8 calibration failed: {first}; build fp32 or fp16, or keep the failing nodes "
            "in float (spec.build.calibration.keepFloat)",
        ) from exc
    count = quantized_count(load_graph(dest).graph)
    if count == 0:
        raise BuildError(
            "PrecisionNotApplied",
            "int8 requested but no node of the graph was quantized (nothing ONNX Runtime can "
            "quantize, or every candidate is kept in float): build fp32 or fp16",
        )
    return Quantized(dest, prepared, count, [describe_node(n) for n in kept])


def quantized_count(graph: onnx.GraphProto) -> int:
    """Compute nodes (not Q/DQ) that read a DequantizeLinear output: they run on int8 data."""
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return sum(
        1
        for node in graph.node
        if node.op_type not in QDQ_OPS and any(i in dequantized for i in node.input)
    )
