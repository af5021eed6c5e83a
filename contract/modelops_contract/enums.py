"""The enumerations both sides speak: formats, engines, precisions, Triton data types, backends."""

from __future__ import annotations

from enum import StrEnum


class ModelFormat(StrEnum):
    """How the model file is stored."""

    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    EXPORTED_PROGRAM = "exported-program"


class EngineKind(StrEnum):
    """Which inference engine the builder produces."""

    TENSORRT = "tensorrt"
    ONNXRUNTIME = "onnxruntime"


class Precision(StrEnum):
    """Numeric precision of the built engine."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class CalibrationMethod(StrEnum):
    """How INT8 activation ranges are chosen from the calibration set."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class AccuracyMetric(StrEnum):
    """What the accuracy gate compares: the task's answer, or every output element."""

    AGREEMENT = "agreement"
    TOPK = "topK"
    MAX_ABS = "maxAbs"


class DataType(StrEnum):
    """Triton data types a tensor may have (the `TYPE_` prefix is dropped)."""

    FP32 = "FP32"
    FP16 = "FP16"
    BF16 = "BF16"
    FP64 = "FP64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    UINT8 = "UINT8"
    BOOL = "BOOL"


class ServingBackend(StrEnum):
    """The Triton backend that serves an engine."""

    TENSORRT_PLAN = "tensorrt_plan"
    ONNXRUNTIME = "onnxruntime"
    PYTHON = "python"
