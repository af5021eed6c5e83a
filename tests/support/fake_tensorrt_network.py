"""The fake `tensorrt` module's ONNX parser and network definition (see fake_tensorrt).

OnnxParser.parse_from_file mirrors the binding: False and a list of errors, never an exception.
The network it fills is strongly typed, as in TensorRT 11: inputs, outputs and one layer per
node (plus a CONSTANT layer per initializer), each output typed as the ONNX graph types it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from tests.support.fake_tensorrt_engine import DataType


class LayerType(enum.Enum):
    CONSTANT = "Constant"
    CAST = "Cast"
    MATRIX_MULTIPLY = "MatMul"
    ACTIVATION = "Activation"
    ELEMENTWISE = "ElementWise"
    NON_ZERO = "NonZero"
    QUANTIZE = "Quantize"
    DEQUANTIZE = "Dequantize"


def _emit(logger: Any, message: str) -> None:
    logger.log(1, message)  # ILogger::Severity::kERROR


_ONNX_TYPES = {
    onnx.TensorProto.FLOAT: DataType.FLOAT,
    onnx.TensorProto.FLOAT16: DataType.HALF,
    onnx.TensorProto.BFLOAT16: DataType.BF16,
    onnx.TensorProto.INT64: DataType.INT64,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.INT8: DataType.INT8,
    onnx.TensorProto.UINT8: DataType.UINT8,
    onnx.TensorProto.BOOL: DataType.BOOL,
}
_LAYER_TYPES = {"Cast": LayerType.CAST, "MatMul": LayerType.MATRIX_MULTIPLY}
_LAYER_TYPES |= {"Gemm": LayerType.MATRIX_MULTIPLY, "Relu": LayerType.ACTIVATION}
_LAYER_TYPES |= {"NonZero": LayerType.NON_ZERO}
_LAYER_TYPES |= {"QuantizeLinear": LayerType.QUANTIZE, "DequantizeLinear": LayerType.DEQUANTIZE}


def _unsigned_quantization(graph: onnx.GraphProto) -> str | None:
    """The first QuantizeLinear with a uint8 zero point: TensorRT quantizes to signed INT8 with
    zero point 0 only (its ONNX parser rejects the rest), so such a graph does not parse."""
    unsigned = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.UINT8}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2 and node.input[2] in unsigned:
            return node.name or node.output[0]
    return None


@dataclass
class ITensor:
    name: str
    dtype: DataType
    shape: tuple[int | str, ...] = ()


@dataclass
class ILayer:
    name: str
    type: LayerType
    outputs: list[ITensor]

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]


@dataclass
class INetworkDefinition:
    flags: int
    inputs: list[ITensor] = field(default_factory=list)
    outputs: list[ITensor] = field(default_factory=list)
    layers: list[ILayer] = field(default_factory=list)
    onnx_bytes: bytes = b""

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_layer(self, index: int) -> ILayer:
        return self.layers[index]


def _tensor(value: onnx.ValueInfoProto) -> ITensor:
    tensor = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim)
    return ITensor(value.name, _ONNX_TYPES[tensor.elem_type], dims)


class ParserError:
    def __init__(self, desc: str) -> None:
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        return self._desc


class OnnxParser:
    """parse_from_file returns False and keeps its errors (get_error / num_errors), never raises."""

    def __init__(self, network: INetworkDefinition, logger: Any) -> None:
        self.network, self.logger, self.errors = network, logger, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def parse_from_file(self, path: str) -> bool:
        try:
            data = Path(path).read_bytes()
            model = onnx.shape_inference.infer_shapes(onnx.load_from_string(data))
        except Exception as exc:
            self.errors.append(ParserError(f"Failed to parse ONNX model from file: {path}: {exc}"))
            _emit(self.logger, f"ModelImporter.cpp: Failed to parse ONNX model from file: {path}")
            return False
        graph = model.graph
        unsigned = _unsigned_quantization(graph)
        if unsigned is not None:
            message = f"{unsigned}: TensorRT supports only INT8 quantization with zero point 0"
            self.errors.append(ParserError(message))
            _emit(self.logger, message)
            return False
        typed = {v.name: _tensor(v) for v in [*graph.value_info, *graph.input, *graph.output]}
        initial = {init.name for init in graph.initializer}
        self.network.inputs = [_tensor(v) for v in graph.input if v.name not in initial]
        self.network.outputs = [_tensor(v) for v in graph.output]
        for init in graph.initializer:
            out = ITensor(init.name, _ONNX_TYPES[init.data_type])
            self.network.layers.append(ILayer(init.name, LayerType.CONSTANT, [out]))
        for node in graph.node:
            kind = _LAYER_TYPES.get(node.op_type, LayerType.ELEMENTWISE)
            outs = [typed.get(name, ITensor(name, DataType.FLOAT)) for name in node.output]
            self.network.layers.append(ILayer(node.name or node.op_type, kind, outs))
        self.network.onnx_bytes = data
        return True
