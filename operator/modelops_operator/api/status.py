"""ModelDeployment status: everything the operator knows, for kubectl."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints

from modelops_contract.request import ShapeFigures
from modelops_contract.shapes import MAX_DIMS
from modelops_contract.wire import WireModel

from .base import cut_to
from .engine_figures import BaselineStatus, QuantizationStatus

HISTORY_LIMIT = 10
# Free text: cut, never rejected (base.cut_to).
Text256 = Annotated[str, BeforeValidator(cut_to(256)), StringConstraints(max_length=256)]
Text1024 = Annotated[str, BeforeValidator(cut_to(1024)), StringConstraints(max_length=1024)]
Text4096 = Annotated[str, BeforeValidator(cut_to(4096)), StringConstraints(max_length=4096)]
Text32768 = Annotated[str, BeforeValidator(cut_to(32768)), StringConstraints(max_length=32768)]


class Phase(StrEnum):
    """The one-word summary shown by `kubectl get md`."""

    PENDING = "Pending"
    BUILDING = "Building"
    ROLLING_OUT = "RollingOut"
    READY = "Ready"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    IDLE = "Idle"


class ConditionType(StrEnum):
    """Condition types the operator maintains."""

    READY = "Ready"
    ENGINE_BUILT = "EngineBuilt"
    ROLLED_OUT = "RolledOut"
    DEGRADED = "Degraded"
    SCALED_TO_ZERO = "ScaledToZero"


class ConditionStatus(StrEnum):
    """metav1.ConditionStatus."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(WireModel):
    """metav1.Condition."""

    type: str = Field(
        max_length=316, description="Ready, EngineBuilt, RolledOut, Degraded or ScaledToZero."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase reason of the last transition.",
    )
    message: Text32768 = Field(default="", description="What happened, for a human.")
    last_transition_time: str = Field(
        max_length=64, description="RFC 3339 time the status last changed."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was set for."
    )


class AccuracyFigures(WireModel):
    """What the accuracy gate measured."""

    max_abs_error: float | None = Field(default=None, description="Largest |engine - reference|.")
    max_rel_error: float | None = Field(default=None, description="Largest relative error.")
    metric: str | None = Field(
        default=None, max_length=16, description="The gate's metric: agreement, topK or maxAbs."
    )
    agreement: float | None = Field(
        default=None, description="Share of answers equal to fp32's (agreement/topK)."
    )
    accuracy: float | None = Field(default=None, description="Accuracy against the labels.")
    baseline_accuracy: float | None = Field(
        default=None, description="fp32's accuracy on the same labelled set."
    )
    samples: int | None = Field(default=None, ge=0, description="Points the task gate judged.")


class LatencyFigures(WireModel):
    """Profiled latency at the opt batch size."""

    p50: float | None = Field(default=None, description="Median latency in ms.")
    p99: float | None = Field(default=None, description="99th percentile latency in ms.")


class ShapeLabel(StrEnum):
    """One of the engine profile's shapes."""

    MIN = "min"
    OPT = "opt"
    MAX = "max"


class ShapeStatus(WireModel):
    """What the gate and the profiler measured at one of the profile's shapes."""

    shape: ShapeLabel = Field(description="min, opt or max (spec.build.shapes).")
    dims: dict[str, Annotated[list[int], Field(max_length=MAX_DIMS)]] | None = Field(
        default=None, max_length=16, description="Each input's dims, batch axis excluded."
    )
    batch: int | None = Field(default=None, ge=1, description="Batch of the latency figures.")
    max_abs_error: float | None = Field(
        default=None, description="Largest |engine - reference| over the gate's batches."
    )
    latency_ms: LatencyFigures | None = Field(default=None, description="Latency at this shape.")
    throughput: float | None = Field(default=None, description="Inferences per second.")

    @classmethod
    def from_figures(cls, figures: ShapeFigures) -> ShapeStatus:
        """The status form of a builder's per-shape figures (summary or engine.json)."""
        latency = None
        if figures.p50_ms is not None and figures.p99_ms is not None:
            latency = LatencyFigures(p50=figures.p50_ms, p99=figures.p99_ms)
        return cls(
            shape=ShapeLabel(figures.shape),
            dims=figures.dims or None,
            batch=figures.batch,
            max_abs_error=figures.max_abs_error,
            latency_ms=latency,
            throughput=figures.throughput,
        )


class EngineStatus(WireModel):
    """The built engine, copied from the build Job's termination message."""

    key: str = Field(max_length=128, description="Engine key: sha256 of everything it depends on.")
    uri: str | None = Field(
        default=None, max_length=2048, description="Where the engine is stored."
    )
    engine: str | None = Field(default=None, max_length=32, description="tensorrt or onnxruntime.")
    tensorrt_version: str | None = Field(
        default=None, max_length=64, description="TensorRT version it was built with."
    )
    compute_capability: str | None = Field(
        default=None, max_length=16, description="CUDA compute capability, e.g. 9.0."
    )
    precision: str | None = Field(default=None, max_length=16, description="fp32, fp16 or int8.")
    accuracy: AccuracyFigures | None = Field(default=None, description="Accuracy gate figures.")
    quantization: QuantizationStatus | None = Field(
        default=None, description="int8: the calibration and the nodes kept in float."
    )
    baseline: BaselineStatus | None = Field(
        default=None, description="int8: size and speed against the fp32 graph."
    )
    latency_ms: LatencyFigures | None = Field(default=None, description="Profiled latency.")
    throughput: float | None = Field(
        default=None, description="Inferences per second at opt batch."
    )
    shapes: list[ShapeStatus] | None = Field(
        default=None, max_length=3, description="Accuracy and latency at the min, opt, max shapes."
    )


class RevisionStatus(WireModel):
    """Which revisions serve: the current one, a candidate being rolled out, the previous one."""

    current: int | None = Field(default=None, ge=0, description="Revision serving traffic.")
    candidate: int | None = Field(default=None, ge=0, description="Revision being rolled out.")
    previous: int | None = Field(default=None, ge=0, description="Revision served before.")


class RevisionState(StrEnum):
    """What became of a revision."""

    PENDING = "Pending"
    ROLLING_OUT = "RollingOut"
    SERVING = "Serving"
    SUPERSEDED = "Superseded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class HistoryEntry(WireModel):
    """One revision in the bounded history."""

    revision: int = Field(ge=0, description="Revision number.")
    engine_key: str = Field(max_length=128, description="Engine key it served.")
    generation: int = Field(ge=0, description="metadata.generation it was made for.")
    state: RevisionState = Field(description="What became of it.")
    reason: Text1024 | None = Field(default=None, description="Why, e.g. a rollback.")
    time: str = Field(max_length=64, description="RFC 3339 time of the last change.")
    signature: str | None = Field(
        default=None,
        max_length=12,
        description="Digest of its engine's inputs, outputs and max batch (the value "
        "spec.rollout.acceptSignature names).",
    )


class RolloutProgress(WireModel):
    """Where the canary stands; kept in status so a restarted operator resumes it."""

    step: int = Field(default=0, ge=0, le=10, description="Index into spec.rollout.canary.steps.")
    step_started_at: str | None = Field(
        default=None, max_length=64, description="When the current step began."
    )
    started_at: str | None = Field(
        default=None, max_length=64, description="When the rollout began."
    )
    passes: int = Field(default=0, ge=0, description="Consecutive passed analyses at this step.")
    failures: int = Field(default=0, ge=0, description="Consecutive failed analyses.")
    note: Text1024 | None = Field(default=None, description="Last analysis verdict.")
    validated: bool = Field(
        default=False, description="The candidate passed its validation run: it may get traffic."
    )
    cut_over: bool = Field(
        default=False,
        description="An accepted signature change: the candidate replaces the serving revision "
        "at once once validated, with no canary steps.",
    )
    steered: Text256 | None = Field(
        default=None,
        description="The steering request in effect (a pause, a manual weight, a promote: "
        "`kubectl modelops`), so that its Event is posted once.",
    )


class MetricsStatus(WireModel):
    """Triton's figures over the last interval, across the serving pods."""

    inferences_per_second: float | None = Field(default=None, description="Successful/s.")
    avg_queue_microseconds: float | None = Field(
        default=None, description="Average queue time per request."
    )
    error_rate: float | None = Field(default=None, description="Failed / all requests.")
    p99_latency_ms: float | None = Field(default=None, description="p99 request latency.")
    observed_at: str | None = Field(
        default=None, max_length=64, description="RFC 3339 time of the scrape."
    )


class ScaleRecord(WireModel):
    """The last scaling decision."""

    from_: int = Field(alias="from", ge=0, description="Replicas before.")
    to: int = Field(ge=0, description="Replicas after.")
    reason: Text1024 = Field(description="e.g. queueTime 9100us > target 5000us.")
    time: str = Field(max_length=64, description="RFC 3339 time of the decision.")


class EndpointStatus(WireModel):
    """In-cluster addresses of the Service."""

    http: str | None = Field(default=None, max_length=512, description="HOST:8000 (HTTP/REST).")
    grpc: str | None = Field(default=None, max_length=512, description="HOST:8001 (gRPC).")


class TrafficWeight(WireModel):
    """One revision's share of client requests."""

    revision: int = Field(ge=0, description="Revision number.")
    weight: int = Field(ge=0, le=100, description="Percent of requests.")


class TrafficStatus(WireModel):
    """How requests are split now (Router and GatewayAPI modes)."""

    mode: str = Field(max_length=16, description="Router, GatewayAPI or Replicas.")
    version: int = Field(default=0, ge=0, description="Grows with every change of the weights.")
    weights: list[TrafficWeight] = Field(
        default_factory=list, max_length=16, description="Each revision's share."
    )
    applied: Text256 | None = Field(
        default=None, description="What the router or gateway reports applied."
    )
    hold_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="Router mode: how long the router holds a request no revision can take "
        "(spec.scaling.coldStartTimeoutSeconds with minReplicas 0, else 0).",
    )


class IdleStatus(WireModel):
    """Scale to zero (spec.scaling.minReplicas 0): when it slept, woke, and its cold start."""

    since: str | None = Field(
        default=None, max_length=64, description="When the serving revision went to 0 pods."
    )
    woke_at: str | None = Field(
        default=None, max_length=64, description="When a held request last woke it."
    )
    cold_start_seconds: float | None = Field(
        default=None,
        ge=0,
        description="The last wake: from the first held request to its response.",
    )


class ValidationStatus(WireModel):
    """The last validation run: a candidate's answers to a known set, before any traffic."""

    revision: int = Field(ge=0, description="The revision that was validated.")
    passed: bool = Field(description="Whether it may get traffic.")
    samples: int | None = Field(default=None, ge=0, description="Samples sent to each pod.")
    pods: int | None = Field(default=None, ge=0, description="Candidate pods that answered.")
    max_abs_error: float | None = Field(default=None, description="Largest |served - expected|.")
    max_rel_error: float | None = Field(default=None, description="Largest relative error.")
    accuracy: float | None = Field(default=None, description="spec.validation: top-1 accuracy.")
    agreement: float | None = Field(default=None, description="spec.validation: agreement.")
    message: Text1024 | None = Field(default=None, description="What it found.")
    time: str | None = Field(default=None, max_length=64, description="When it finished.")


class SourceAccess(WireModel):
    """The proof that this ModelDeployment can read its model: the engine server's receipt for
    the source's bytes (only a holder of the transfer key can make one, and it names this
    ModelDeployment's uid). A stored engine is used only with it (docs/security.md)."""

    sha256: str = Field(
        max_length=64, pattern=r"^[0-9a-f]{64}$", description="The source's sha256."
    )
    receipt: str = Field(max_length=128, description="The engine server's receipt.")
    time: str | None = Field(default=None, max_length=64, description="When it was received.")


class ModelDeploymentStatus(WireModel):
    """The observed state the operator writes through the status subresource."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status describes."
    )
    phase: Phase = Field(default=Phase.PENDING, description="One-word summary.")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, EngineBuilt, RolledOut, Degraded, ScaledToZero (metav1.Condition).",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    engine: EngineStatus | None = Field(default=None, description="The engine last built.")
    revision: RevisionStatus = Field(
        default_factory=RevisionStatus, description="Revision numbers."
    )
    rollout: RolloutProgress | None = Field(default=None, description="Canary progress.")
    history: list[HistoryEntry] = Field(
        default_factory=list,
        max_length=HISTORY_LIMIT,
        description="The last 10 revisions, newest last.",
    )
    replicas: int = Field(default=0, ge=0, description="Serving pods (all revisions).")
    ready_replicas: int = Field(default=0, ge=0, description="Ready serving pods.")
    ready: str | None = Field(default=None, max_length=32, description="readyReplicas/replicas.")
    selector: str | None = Field(
        default=None, max_length=1024, description="Label selector of the pods, for /scale."
    )
    metrics: MetricsStatus | None = Field(default=None, description="Triton's latest figures.")
    idle: IdleStatus | None = Field(default=None, description="Scale to zero (minReplicas 0).")
    last_scale: ScaleRecord | None = Field(default=None, description="The last scaling decision.")
    endpoint: EndpointStatus | None = Field(default=None, description="Service addresses.")
    traffic: TrafficStatus | None = Field(default=None, description="The traffic split.")
    validation: ValidationStatus | None = Field(default=None, description="Last validation run.")
    source_access: SourceAccess | None = Field(
        default=None, description="Proof that this ModelDeployment can read its source."
    )
    message: Text4096 | None = Field(default=None, description="Human summary.")
