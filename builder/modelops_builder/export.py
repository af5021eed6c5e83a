"""Turn the verified model file into a checked ONNX graph and its I/O signature.

ONNX is taken as is; TorchScript (`torch.jit.load`) and ExportedProgram (`torch.export.load`) are
exported with the legacy TorchScript-based ONNX exporter (the dynamo exporter needs onnxscript,
which the image does not ship) with a dynamic batch axis. Nothing here ever calls `torch.load` on
a pickle: torch formats must be the zip archives their loaders expect, checked before loading.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from modelops_contract.request import BuildRequest, TensorSig

from .errors import BuildError

log = logging.getLogger(__name__)

OPSET = 17
# Value a dynamic non-batch dimension takes in example, gate and profile inputs when the
# request does not fix it (e.g. a sequence length).
DEFAULT_DYNAMIC_DIM = 16
# Integer inputs (token ids, indices) get values in [0, INT_HIGH): valid for any embedding table
# with at least this many rows.
INT_HIGH = 4

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
NUMPY_DTYPES: dict[str, Any] = {
    "FP32": np.float32,
    "FP16": np.float16,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


@dataclass(frozen=True)
class OnnxModel:
    """A checked ONNX file and its signature (dims without batch, -1 for dynamic)."""

    path: Path
    inputs: list[TensorSig]
    outputs: list[TensorSig]


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


def example_inputs(inputs: list[TensorSig], batch: int, seed: int = 0) -> dict[str, Any]:
    """Seeded numpy inputs: normal floats, small non-negative integers, dynamic dims fixed."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for sig in inputs:
        dtype = NUMPY_DTYPES.get(sig.data_type)
        if dtype is None:
            raise BuildError("InvalidModel", f"input '{sig.name}': {sig.data_type} unsupported")
        shape = (batch, *(d if d > 0 else DEFAULT_DYNAMIC_DIM for d in sig.dims))
        if np.issubdtype(dtype, np.floating):
            feeds[sig.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[sig.name] = rng.integers(0, INT_HIGH if dtype != np.bool_ else 2, size=shape)
            feeds[sig.name] = feeds[sig.name].astype(dtype)
    return feeds


def _load_checked(path: Path) -> onnx.ModelProto:
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, InferenceError...
        raise BuildError("InvalidModel", f"not a valid ONNX model: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def _require_zip(path: Path, fmt: str, member: str) -> None:
    """Reject anything but the zip archive `fmt` is saved as, before torch reads a byte of it."""
    hint = (
        "save it with torch.jit.save" if fmt == "torchscript" else "save it with torch.export.save"
    )
    if not zipfile.is_zipfile(path):
        raise BuildError(
            "InvalidModel",
            f"not a {fmt} archive (not a zip file): {hint}; "
            "pickled modules (torch.save) are refused",
        )
    with zipfile.ZipFile(path) as archive:
        if not any(n.endswith(member) for n in archive.namelist()):
            raise BuildError(
                "InvalidModel",
                f"not a {fmt} archive (no {member}): {hint}; "
                "pickled modules (torch.save) are refused",
            )


def _load_torch(path: Path, fmt: str) -> Any:
    import torch

    try:
        if fmt == "torchscript":
            _require_zip(path, fmt, "constants.pkl")
            # TorchScript's own unpickler only rebuilds TorchScript types, never arbitrary globals.
            return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        _require_zip(path, fmt, "archive_format")
        return torch.export.load(str(path)).module()
    except BuildError:
        raise
    except Exception as exc:
        raise BuildError("InvalidModel", f"cannot load {fmt}: {_first_line(exc)}") from exc


def _export_torch(request: BuildRequest, source: Path, dest: Path) -> None:
    import torch

    if not request.inputs:
        raise BuildError(
            "SignatureRequired", f"format {request.format} needs spec inputs (name, dataType, dims)"
        )
    module = _load_torch(source, request.format)
    input_names = [s.name for s in request.inputs]
    output_names = [s.name for s in request.outputs] if request.outputs else None
    axes: dict[str, dict[int, str]] = {}
    for sig in request.inputs:
        axes[sig.name] = {0: "batch"} | {
            i + 1: f"{sig.name}_{i + 1}" for i, d in enumerate(sig.dims) if d < 0
        }
    for name in output_names or []:
        axes[name] = {0: "batch"}
    last: Exception | None = None
    # Batch 2 first: tracing at batch 1 can bake the batch size into reshapes.
    for batch in (2, 1):
        feeds = example_inputs(request.inputs, batch)
        example = tuple(torch.from_numpy(feeds[n]) for n in input_names)
        try:
            with warnings.catch_warnings():
                # The legacy exporter warns about itself on every call: noise in the Job's log.
                warnings.simplefilter("ignore")
                _export_once(module, example, dest, request.format, input_names, output_names, axes)
            return
        except Exception as exc:  # tracing/export errors come in many types
            last = exc
            log.info("export at batch %d failed: %s", batch, _first_line(exc))
    raise BuildError(
        "ExportFailed",
        f"ONNX export of {request.format} failed: {_first_line(last or RuntimeError())}",
    )


def _export_once(
    module: Any,
    example: tuple[Any, ...],
    dest: Path,
    fmt: str,
    input_names: list[str],
    output_names: list[str] | None,
    axes: dict[str, dict[int, str]],
) -> None:
    import torch

    if fmt == "exported-program":
        # The legacy exporter cannot take an fx GraphModule: trace it to TorchScript first.
        module = torch.jit.trace(module, example, check_trace=False)  # type: ignore[no-untyped-call]
    torch.onnx.export(
        module,
        example,
        str(dest),
        dynamo=False,
        training=torch.onnx.TrainingMode.PRESERVE,
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=axes,
        opset_version=OPSET,
    )


def _name_outputs(model: onnx.ModelProto, request: BuildRequest) -> None:
    """Give exported outputs stable names (output0, ...) when the request names none."""
    if request.outputs:
        if len(request.outputs) != len(model.graph.output):
            raise BuildError(
                "SignatureMismatch",
                f"outputs: spec has {len(request.outputs)}, graph has {len(model.graph.output)}",
            )
        return
    renames = {o.name: f"output{i}" for i, o in enumerate(model.graph.output)}
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for info in model.graph.value_info:
        info.name = renames.get(info.name, info.name)
    for value in model.graph.output:
        value.name = renames[value.name]


def to_onnx(request: BuildRequest, source: Path, work: Path) -> OnnxModel:
    """The checked fp32 ONNX graph of the verified source, with its reconciled signature."""
    if request.format == "onnx":
        model = _load_checked(source)
        path = source
    else:
        path = work / "exported.onnx"
        _export_torch(request, source, path)
        model = _load_checked(path)
        _name_outputs(model, request)
        onnx.save(model, str(path))
    graph_in, graph_out = graph_signature(model)
    fp16 = request.precision == "fp16"
    inputs = reconcile("input", request.inputs, graph_in, fp16=fp16)
    outputs = reconcile("output", request.outputs, graph_out, fp16=fp16)
    return OnnxModel(path=path, inputs=inputs, outputs=outputs)
