"""Did fp16 or int8 reach the network? Answered from the parsed network, before the build.

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


def int8_layers(trt: Any, network: Any) -> tuple[int, int]:
    """(QUANTIZE layers with an INT8 output, DEQUANTIZE layers) of a parsed network: the QDQ
    graph's explicit quantization as TensorRT parsed it."""
    quantize, dequantize = trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE
    quantized = dequantized = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type == quantize:
            out = layer.get_output(0)
            quantized += int(out is not None and out.dtype == trt.DataType.INT8)
        elif layer.type == dequantize:
            dequantized += 1
    return quantized, dequantized


def require_int8(trt: Any, network: Any) -> None:
    """PrecisionNotApplied unless the parsed network quantizes to INT8 and dequantizes again.

    Explicit quantization: the scales are the graph's Q/DQ nodes (calibrated by the builder),
    so no INT8 calibrator is ever attached; a strongly typed network takes them as they are."""
    quantized, dequantized = int8_layers(trt, network)
    if quantized == 0 or dequantized == 0:
        raise BuildError(
            "PrecisionNotApplied",
            f"int8 requested but TensorRT parsed {quantized} INT8 quantize and {dequantized} "
            f"dequantize layers of {network.num_layers} (the QDQ graph did not reach TensorRT)",
        )
    log.info("int8: %d quantize, %d dequantize layers", quantized, dequantized)
