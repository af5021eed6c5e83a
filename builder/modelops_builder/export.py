"""Turn the verified model file into a checked ONNX graph and its I/O signature.

ONNX is taken as is (its external-data references checked before anything reads them);
ExportedProgram and TorchScript are exported by torch_export (dynamo and legacy exporters).
Nothing here ever unpickles: torch archives are checked by torch_archive before torch reads them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from modelops_contract.request import BuildRequest, TensorSig

from .errors import BuildError
from .onnx_files import check_external_data, load_graph
from .shapes import Dim, InputDims

log = logging.getLogger(__name__)

_ONNX_TO_TRITON: dict[int, str] = {
    TensorProto.FLOAT: "FP32",
    TensorProto.FLOAT16: "FP16",
    TensorProto.DOUBLE: "FP64",
    TensorProto.BFLOAT16: "BF16",
    TensorProto.INT64: "INT64",
    TensorProto.INT32: "INT32",
    TensorProto.INT16: "INT16",
    TensorProto.INT8: "INT8",
    TensorProto.UINT8: "UINT8",
    TensorProto.BOOL: "BOOL",
}


@dataclass(frozen=True)
class OnnxModel:
    """A checked ONNX file and its signature (dims without batch, -1 for dynamic), and each
    input's dims as the shape plan needs them (named dynamic dims kept)."""

    path: Path
    inputs: list[TensorSig]
    outputs: list[TensorSig]
    input_dims: list[InputDims]


def describe(sig: TensorSig) -> str:
    """`FP32 [3, 224, 224]`: how errors name a tensor's type."""
    return f"{sig.data_type} {sig.dims}"


def _value_sig(value: onnx.ValueInfoProto, role: str) -> TensorSig:
    tensor = value.type.tensor_type
    dtype = _ONNX_TO_TRITON.get(tensor.elem_type)
    if dtype is None:
        raise BuildError(
            "InvalidModel",
            f"{role} '{value.name}': unsupported element type "
            f"{TensorProto.DataType.Name(tensor.elem_type)}",
        )
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
    if not dims:
        raise BuildError("InvalidModel", f"{role} '{value.name}' is a scalar: no batch axis")
    if dims[0] != -1:
        raise BuildError(
            "InvalidModel",
            f"{role} '{value.name}' has a fixed first dimension {dims[0]}; the builder needs a "
            "dynamic batch axis (export with dynamic_axes={name: {0: 'batch'}})",
        )
    return TensorSig(name=value.name, data_type=dtype, dims=dims[1:])


def graph_signature(model: onnx.ModelProto) -> tuple[list[TensorSig], list[TensorSig]]:
    """Inputs (initializers excluded) and outputs of a graph, batch axis dropped."""
    weights = {init.name for init in model.graph.initializer}
    inputs = [_value_sig(v, "input") for v in model.graph.input if v.name not in weights]
    outputs = [_value_sig(v, "output") for v in model.graph.output]
    return inputs, outputs


def _dims_compatible(spec: list[int], graph: list[int]) -> bool:
    # A request may fix a dimension the graph leaves dynamic, never the other way round.
    return len(spec) == len(graph) and all(
        g == -1 or s == g for s, g in zip(spec, graph, strict=True)
    )


def reconcile(
    role: str, spec: list[TensorSig] | None, graph: list[TensorSig], *, fp16: bool
) -> list[TensorSig]:
    """The engine's signature: the graph's, narrowed by the request; contradictions fail."""
    if spec is None:
        return graph
    by_name = {g.name: g for g in graph}
    if {s.name for s in spec} != set(by_name):
        raise BuildError(
            "SignatureMismatch",
            f"{role}s: spec names {sorted(s.name for s in spec)}, graph has {sorted(by_name)}",
        )
    result = []
    for sig in spec:
        found = by_name[sig.name]
        # An fp16 build may be asked for FP16 I/O of an FP32 graph: the conversion provides it.
        dtype_ok = sig.data_type == found.data_type or (
            fp16 and sig.data_type == "FP16" and found.data_type == "FP32"
        )
        if not dtype_ok or not _dims_compatible(sig.dims, found.dims):
            raise BuildError(
                "SignatureMismatch",
                f"{role} '{sig.name}': spec says {describe(sig)}, graph has {describe(found)}",
            )
        result.append(TensorSig(name=sig.name, data_type=found.data_type, dims=sig.dims))
    return result


def _load_checked(path: Path) -> onnx.ModelProto:
    """The graph, without its weights: external-data references checked before any is read,
    then onnx.checker (from the path: models over 2 GiB) and strict shape inference."""
    try:
        model = load_graph(path)
    except Exception as exc:  # onnx raises DecodeError and others on a broken file
        raise BuildError("InvalidModel", f"not a valid ONNX model: {_first_line(exc)}") from exc
    check_external_data(model, path)
    try:
        onnx.checker.check_model(str(path))
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # onnx raises ValidationError, InferenceError...
        raise BuildError("InvalidModel", f"not a valid ONNX model: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _name_outputs(model: onnx.ModelProto, request: BuildRequest) -> bool:
    """Give TorchScript exports stable output names (output0, ...) when the request names none;
    whether anything was renamed."""
    if request.outputs:
        if len(request.outputs) != len(model.graph.output):
            raise BuildError(
                "SignatureMismatch",
                f"outputs: spec has {len(request.outputs)}, graph has {len(model.graph.output)}",
            )
        return False
    renames = {o.name: f"output{i}" for i, o in enumerate(model.graph.output)}
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for info in model.graph.value_info:
        info.name = renames.get(info.name, info.name)
    for value in model.graph.output:
        value.name = renames[value.name]
    return True


def graph_input_dims(model: onnx.ModelProto, signature: list[TensorSig]) -> list[InputDims]:
    """Each input's dims for the shape plan: the request's fixed sizes, the graph's dim names
    (shared by inputs with the same dynamic dim), None for an anonymous dynamic dim."""
    graph_dims: dict[str, list[onnx.TensorShapeProto.Dimension]] = {
        v.name: list(v.type.tensor_type.shape.dim)[1:] for v in model.graph.input
    }
    result = []
    for sig in signature:
        dims: list[Dim] = []
        for size, dim in zip(sig.dims, graph_dims.get(sig.name, []), strict=False):
            dims.append(size if size > 0 else (dim.dim_param or None))
        result.append(InputDims(sig.name, tuple(dims)))
    return result


def to_onnx(request: BuildRequest, source: Path, work: Path) -> OnnxModel:
    """The checked fp32 ONNX graph of the verified source, with its reconciled signature."""
    from .torch_export import export_program, export_torchscript

    if request.format == "onnx":
        model = _load_checked(source)
        path = source
    else:
        path = work / "exported.onnx"
        if request.format == "exported-program":
            export_program(request, source, path)
        else:
            export_torchscript(request, source, path)
        # The export holds everything the build needs: the source's space is scratch again.
        source.unlink(missing_ok=True)
        model = _load_checked(path)
        if request.format == "torchscript" and _name_outputs(model, request):
            onnx.save(model, str(path))  # TorchScript exports are single-file graphs
    graph_in, graph_out = graph_signature(model)
    fp16 = request.precision == "fp16"
    inputs = reconcile("input", request.inputs, graph_in, fp16=fp16)
    outputs = reconcile("output", request.outputs, graph_out, fp16=fp16)
    return OnnxModel(
        path=path, inputs=inputs, outputs=outputs, input_dims=graph_input_dims(model, inputs)
    )
