"""Export a torch model to ONNX: ExportedProgram with the dynamo exporter, TorchScript with the
legacy one.

An ExportedProgram carries its signature and its dynamic dims: the request's inputs/outputs are
optional and, when given, checked against the program before anything is exported. The dynamo
exporter (onnxscript) keeps the program's symbolic dims as named ONNX dims, shared between
inputs exactly as in the program. TorchScript has neither, so it needs the request's inputs and
goes through the TorchScript-based exporter; when that fails the error says to save an
ExportedProgram instead.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from modelops_contract.request import BuildRequest, TensorSig

from .errors import BuildError
from .example_inputs import example_inputs
from .torch_archive import check_exported_program
from .torch_load import load_program, load_torchscript

log = logging.getLogger(__name__)

TORCHSCRIPT_OPSET = 17
# Weights above this go to an external-data file beside the graph (protobuf's limit is 2 GiB).
EXTERNAL_DATA_BYTES = 1 << 30
_TRITON_TYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "bfloat16": "BF16",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def program_signature(program: Any) -> tuple[list[TensorSig], int]:
    """The program's inputs (dims without batch, -1 where symbolic) and its output count."""
    user_inputs = list(program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    sigs = []
    for name in user_inputs:
        value = placeholders[name].meta.get("val")
        if value is None or not hasattr(value, "shape"):
            raise BuildError("InvalidModel", f"program input '{name}' is not a tensor")
        dtype = _TRITON_TYPES.get(str(value.dtype).removeprefix("torch."))
        if dtype is None:
            raise BuildError("InvalidModel", f"program input '{name}': {value.dtype} unsupported")
        dims = [d if isinstance(d, int) else -1 for d in value.shape]
        if not dims or dims[0] != -1:
            raise BuildError(
                "InvalidModel",
                f"program input '{name}' has a fixed first dim {dims[:1]}: the builder needs a "
                "dynamic batch axis (torch.export.export(..., dynamic_shapes={"
                f"'{name}': {{0: torch.export.Dim('batch')}}}}))",
            )
        sigs.append(TensorSig(name=name, data_type=dtype, dims=dims[1:]))
    return sigs, len(program.graph_signature.user_outputs)


def check_against_program(
    request: BuildRequest, program_inputs: list[TensorSig], outputs: int
) -> None:
    """The request's signature, where given, must be the program's (a dynamic dim may be fixed)."""
    if request.outputs is not None and len(request.outputs) != outputs:
        raise BuildError(
            "SignatureMismatch",
            f"outputs: spec lists {len(request.outputs)} "
            f"({', '.join(o.name for o in request.outputs)}), the program returns {outputs}",
        )
    if request.inputs is None:
        return
    have = {s.name: s for s in program_inputs}
    if {s.name for s in request.inputs} != set(have):
        raise BuildError(
            "SignatureMismatch",
            f"inputs: spec names {[s.name for s in request.inputs]}, the program has {list(have)}",
        )
    for sig in request.inputs:
        found = have[sig.name]
        fits = len(sig.dims) == len(found.dims) and all(
            f == -1 or s == f for s, f in zip(sig.dims, found.dims, strict=True)
        )
        if sig.data_type != found.data_type or not fits:
            raise BuildError(
                "SignatureMismatch",
                f"input '{sig.name}': spec says {sig.data_type} {sig.dims}, the program has "
                f"{found.data_type} {found.dims} (dims without the batch axis, -1 dynamic)",
            )


def _weight_bytes(program: Any) -> int:
    tensors = [*program.state_dict.values(), *program.constants.values()]
    return sum(t.numel() * t.element_size() for t in tensors if hasattr(t, "numel"))


def export_program(request: BuildRequest, source: Path, dest: Path) -> None:
    """ExportedProgram -> ONNX at `dest` with the dynamo exporter (never unpickling anything)."""
    import torch

    program = load_program(check_exported_program(source))
    inputs, outputs = program_signature(program)
    check_against_program(request, inputs, outputs)
    names = [o.name for o in request.outputs] if request.outputs else None
    names = names or [f"output{i}" for i in range(outputs)]
    # torchvision's absent ops are reported once per export: noise in the Job's log.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                program,
                (),
                str(dest),
                dynamo=True,
                verbose=False,
                output_names=names,
                external_data=_weight_bytes(program) > EXTERNAL_DATA_BYTES,
            )
    except Exception as exc:  # the exporter raises its own errors of many types
        raise BuildError(
            "ExportFailed", f"dynamo ONNX export of the exported-program failed: {_first_line(exc)}"
        ) from exc


def export_torchscript(request: BuildRequest, source: Path, dest: Path) -> None:
    """TorchScript -> ONNX at `dest` with the legacy exporter (batch 2 first, then batch 1)."""

    if not request.inputs:
        raise BuildError(
            "SignatureRequired", "format torchscript needs spec inputs (name, dataType, dims)"
        )
    module = load_torchscript(source)
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
        example = tuple(torch_tensor(feeds[n]) for n in input_names)
        try:
            _legacy_export(module, example, dest, (input_names, output_names), axes)
            return
        except Exception as exc:  # tracing/export errors come in many types
            last = exc
            log.info("export at batch %d failed: %s", batch, _first_line(exc))
    raise BuildError(
        "ExportFailed",
        f"ONNX export of torchscript failed: {_first_line(last or RuntimeError())}; the "
        "TorchScript exporter is deprecated and cannot export many models (e.g. transformers): "
        "save the model as an ExportedProgram (torch.export.export, then torch.export.save) and "
        "set spec.model.format: exported-program",
    )


def torch_tensor(array: Any) -> Any:
    """A torch tensor over a numpy array."""
    import torch

    return torch.from_numpy(array)


def _legacy_export(
    module: Any,
    example: tuple[Any, ...],
    dest: Path,
    names: tuple[list[str], list[str] | None],
    axes: dict[str, dict[int, str]],
) -> None:
    import torch

    with warnings.catch_warnings():
        # The legacy exporter warns about itself on every call: noise in the Job's log.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(dest),
            dynamo=False,
            training=torch.onnx.TrainingMode.PRESERVE,
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=axes,
            opset_version=TORCHSCRIPT_OPSET,
        )
