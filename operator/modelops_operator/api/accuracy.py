"""spec.build.accuracy (the build's gate) and spec.build.calibration (int8's calibration set)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from modelops_contract.enums import AccuracyMetric, CalibrationMethod
from modelops_contract.quantization import DEFAULT_METHOD, MAX_KEEP_FLOAT
from modelops_contract.wire import WireModel

from . import rules
from .base import cel
from .source import Source

# An ONNX op type (LayerNormalization) or a node name as the exporter wrote it (/encoder/ln_1).
NodeName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_./:\[\]-]+$")]


class AccuracySpec(WireModel):
    """The accuracy gate of the build: elementwise tolerances, or the model's task."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.topK) || (has(self.metric) && self.metric == 'topK')",
                    rules.MSG_TOP_K,
                    ".topK",
                ),
                cel(
                    "!has(self.minAgreement) || !has(self.metric) || self.metric != 'maxAbs'",
                    rules.MSG_MIN_AGREEMENT,
                    ".minAgreement",
                ),
            ]
        }
    )

    atol: float | None = Field(
        default=None, ge=0, le=1000, description="Absolute tolerance; default by precision."
    )
    rtol: float | None = Field(
        default=None, ge=0, le=1000, description="Relative tolerance; default by precision."
    )
    metric: AccuracyMetric | None = Field(
        default=None,
        description="agreement: the argmax (last axis) equals fp32's on at least minAgreement "
        "of the points; topK: fp32's top class is among the engine's top K; maxAbs: "
        "|engine - fp32| <= atol + rtol * |fp32| everywhere. Default: agreement for int8, "
        "maxAbs otherwise.",
    )
    min_agreement: float | None = Field(
        default=None, ge=0, le=1, description="Share of points that must agree; default 0.99."
    )
    top_k: int | None = Field(
        default=None, ge=1, le=1000, description="K of metric topK; default 5."
    )
    min_accuracy: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="With a labelled spec.validation set: the engine's accuracy against the "
        "labels must reach this.",
    )
    max_accuracy_drop: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="With a labelled spec.validation set: the engine's accuracy may be at most "
        "this below fp32's on the same set; default 0.01 when the set is labelled.",
    )

    @model_validator(mode="after")
    def _cross_fields(self) -> AccuracySpec:
        if self.top_k is not None and self.metric != AccuracyMetric.TOPK:
            raise ValueError(rules.MSG_TOP_K)
        if self.min_agreement is not None and self.metric == AccuracyMetric.MAX_ABS:
            raise ValueError(rules.MSG_MIN_AGREEMENT)
        return self


class CalibrationSpec(WireModel):
    """How an int8 engine is calibrated: the activations' ranges come from this set."""

    source: Source | None = Field(
        default=None,
        description="An .npz of input arrays (one per input name, batch first), like "
        "spec.validation's; absent: the builder's own random inputs (status warns: they "
        "calibrate poorly).",
    )
    method: CalibrationMethod = Field(
        default=DEFAULT_METHOD,
        description="minmax (default: the observed range), entropy (KL divergence) or "
        "percentile (99.999th, clips outliers).",
    )
    keep_float: list[NodeName] | None = Field(
        default=None,
        max_length=MAX_KEEP_FLOAT,
        description="ONNX op types or node names kept in float besides the defaults "
        "(LayerNormalization, Softmax, a transformer's output head): what a failed gate names.",
    )
