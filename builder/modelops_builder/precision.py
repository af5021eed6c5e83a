"""fp16: convert the ONNX graph itself (TensorRT 11 is strongly typed), then prove it converted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from .errors import BuildError


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


def count_floats(model: onnx.ModelProto) -> PrecisionReport:
    """Count fp16 and fp32 initializers and typed intermediate values (after shape inference)."""
    inits = [i.data_type for i in model.graph.initializer]
    values = [v.type.tensor_type.elem_type for v in model.graph.value_info]
    return PrecisionReport(
        fp16_initializers=inits.count(TensorProto.FLOAT16),
        fp32_initializers=inits.count(TensorProto.FLOAT),
        fp16_values=values.count(TensorProto.FLOAT16),
        fp32_values=values.count(TensorProto.FLOAT),
    )


def convert_fp16(src: Path, dst: Path, *, keep_io_types: bool = True) -> PrecisionReport:
    """Write the fp16 version of `src` to `dst` (I/O kept fp32 unless asked) and verify it."""
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    try:
        converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types)
        converted = onnx.shape_inference.infer_shapes(converted)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises plain ValueError/RuntimeError/AssertionError
        raise BuildError("PrecisionConversionFailed", f"fp16 conversion failed: {exc}") from exc
    report = count_floats(converted)
    # A graph with no fp16 weights and no fp16 activations was not converted at all: serving it
    # as "fp16" would be a lie the gate cannot catch (it would pass with fp32 accuracy).
    if report.fp16_initializers == 0 and report.fp16_values == 0:
        raise BuildError(
            "PrecisionConversionFailed",
            f"fp16 requested but nothing in the graph was converted ({report.detail()})",
        )
    onnx.save(converted, str(dst))
    return report
