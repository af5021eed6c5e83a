"""After a failed int8 gate: which nodes to keep in higher precision.

ONNX Runtime's QDQ debugging tools run the fp32 graph and the QDQ graph with every activation as
an output, on a few of the gate's samples; for each tensor both graphs compute, the signal-to-
quantization-noise ratio (SQNR, dB) of the int8 model's value against the fp32 model's. A node
that breaks accuracy is one whose output's SQNR falls far below its inputs': the quantization of
that node (its weights, or its output's one scale) loses what the model needs. The nodes with
the largest fall are named, most harmful first, for spec.build.calibration.keepFloat.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DataSet
from .onnx_files import load_graph
from .quantize import QDQ_OPS, SetReader

log = logging.getLogger(__name__)

ADVICE_SAMPLES = 16
ADVISED = 3
# A node whose output keeps its inputs' SQNR within this many dB is not the culprit.
MIN_FALL_DB = 3.0


def sqnr(reference: Any, noisy: Any) -> float:
    """Signal-to-quantization-noise ratio in dB (capped at 100: no noise)."""
    signal = float(np.sum(np.square(reference, dtype=np.float64)))
    noise = float(np.sum(np.square(np.asarray(reference, np.float64) - noisy)))
    if noise <= signal * 1e-10:
        return 100.0
    return 10.0 * math.log10(max(signal, 1e-30) / noise)


def sqnr_by_tensor(fp32: Path, qdq: Path, data: DataSet, work: Path) -> dict[str, float]:
    """SQNR (dB) of every float tensor of the QDQ graph against the fp32 graph's same tensor."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    sample = data.head(ADVICE_SAMPLES)
    float_aug, qdq_aug = work / "advice-fp32.onnx", work / "advice-qdq.onnx"
    modify_model_output_intermediate_tensors(str(fp32), str(float_aug))
    modify_model_output_intermediate_tensors(str(qdq), str(qdq_aug))
    reference = collect_activations(str(float_aug), SetReader(sample, ADVICE_SAMPLES))
    quantized = collect_activations(str(qdq_aug), SetReader(sample, ADVICE_SAMPLES))
    figures = {}
    for name, values in reference.items():
        got = quantized.get(name)
        if got is None or len(got) != len(values):
            continue
        want, have = np.concatenate(values), np.concatenate(got)
        if want.shape == have.shape and np.issubdtype(want.dtype, np.floating):
            figures[name] = sqnr(want, have)
    return figures


def advise(fp32: Path, qdq: Path, data: DataSet, work: Path) -> list[str]:
    """Up to three quantized node names whose output loses the most SQNR against its inputs."""
    try:
        figures = sqnr_by_tensor(fp32, qdq, data, work)
    except Exception as exc:  # advice is a courtesy: never hide the gate's own failure
        log.warning("no keepFloat advice: %s", exc)
        return []
    graph = load_graph(qdq).graph
    # In the QDQ graph a node reads DequantizeLinear(QuantizeLinear(T)); its fp32 tensor is T.
    quantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    source = {
        node.output[0]: quantized.get(node.input[0], node.input[0])
        for node in graph.node
        if node.op_type == "DequantizeLinear"
    }
    falls: list[tuple[float, str]] = []
    for node in graph.node:
        if node.op_type in QDQ_OPS or not node.output:
            continue
        output = figures.get(node.output[0])
        inputs = [figures[source.get(i, i)] for i in node.input if source.get(i, i) in figures]
        if output is None or not inputs or not any(i in source for i in node.input):
            continue
        falls.append((min(inputs) - output, node.name))
    falls.sort(reverse=True)
    return [name for fall, name in falls[:ADVISED] if fall > MIN_FALL_DB]
