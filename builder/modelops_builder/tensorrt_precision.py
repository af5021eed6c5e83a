"""Did fp16 reach the network? Answered from the parsed network, before the build.

TensorRT 11 networks are strongly typed: every layer output has the type the ONNX graph gives it,
and the builder keeps those types. So the layer output types of the parsed network are what the
engine will compute in, known before spending minutes on a build. The engine inspector is no
good for this: without an execution context it prints dynamic shapes as -1 and hides formats,
and a Myelin-fused region appears as one foreign node listing only its FP32 boundary tensors,
so a correctly converted fp16 graph could read as "no fp16 layer at all".
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import BuildError

log = logging.getLogger(__name__)


# Layers that move or hold data without computing: an fp16 cast or constant in front of fp32
# maths is not fp16 inference.
NOT_COMPUTE = ("CAST", "CONSTANT", "IDENTITY")


def half_layers(trt: Any, network: Any) -> tuple[int, int]:
    """(compute layers with an fp16 output, all layers) of a parsed strongly typed network."""
    half = trt.DataType.HALF
    skipped = {getattr(trt.LayerType, name) for name in NOT_COMPUTE if hasattr(trt.LayerType, name)}
    counted = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type in skipped:
            continue
        outputs = (layer.get_output(j) for j in range(layer.num_outputs))
        if any(tensor is not None and tensor.dtype == half for tensor in outputs):
            counted += 1
    return counted, network.num_layers


def require_fp16(trt: Any, network: Any) -> None:
    """PrecisionNotApplied unless some compute layer of the parsed network outputs fp16."""
    half, total = half_layers(trt, network)
    if half == 0:
        raise BuildError(
            "PrecisionNotApplied",
            f"fp16 requested but none of the {total} layers TensorRT parsed computes in fp16 "
            "(the fp16 conversion left the graph in fp32)",
        )
    log.info("fp16 layers: %d of %d", half, total)
