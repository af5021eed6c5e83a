"""status.engine's int8 figures: the calibration, and the engine against its fp32 baseline."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from modelops_contract.quantization import BaselineFigures, QuantizationReport
from modelops_contract.wire import WireModel


class QuantizationStatus(WireModel):
    """How an int8 engine was calibrated and what stayed in higher precision."""

    method: str | None = Field(default=None, max_length=16, description="Calibration method.")
    calibration: str | None = Field(
        default=None, max_length=256, description="sha256:<hex> of the set, or builder."
    )
    samples: int | None = Field(default=None, ge=0, description="Calibration samples.")
    kept_float: list[Annotated[str, Field(max_length=300)]] | None = Field(
        default=None, max_length=8, description="Nodes kept in float (all in engine.json)."
    )
    warning: str | None = Field(default=None, max_length=512, description="E.g. random inputs.")


class BaselineStatus(WireModel):
    """The engine against the fp32 graph of the same source."""

    size_ratio: float | None = Field(default=None, description="Engine bytes / fp32 bytes.")
    throughput_ratio: float | None = Field(
        default=None, description="Throughput / fp32's at the opt shape and batch."
    )
    fp32_latency_ms: float | None = Field(default=None, description="fp32 p50 at the opt shape.")
    fp32_throughput: float | None = Field(default=None, description="fp32 at the opt shape.")


def quantization_status(report: QuantizationReport | None) -> QuantizationStatus | None:
    """status.engine.quantization of an int8 build (at most 8 kept nodes named)."""
    if report is None:
        return None
    kept = report.kept_float
    shown = kept if len(kept) <= 8 else [*kept[:7], f"... {len(kept) - 7} more (engine.json)"]
    return QuantizationStatus(
        method=report.method,
        calibration=report.calibration,
        samples=report.samples,
        kept_float=[k[:300] for k in shown] or None,
        warning=report.warning,
    )


def baseline_status(figures: BaselineFigures | None) -> BaselineStatus | None:
    """status.engine.baseline: the opt shape's ratios against fp32."""
    if figures is None:
        return None
    opt = next((s for s in figures.shapes if s.shape == "opt"), None)
    return BaselineStatus(
        size_ratio=figures.size_ratio,
        throughput_ratio=opt.throughput_ratio if opt else None,
        fp32_latency_ms=opt.p50_ms if opt else None,
        fp32_throughput=opt.throughput if opt else None,
    )
