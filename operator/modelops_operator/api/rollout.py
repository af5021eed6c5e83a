"""How a new revision replaces the serving one: strategy, canary steps, traffic, validation."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field, model_validator

from modelops_contract.wire import WireModel

from . import rules
from .base import DNS1123_SUBDOMAIN, cel
from .enums import RolloutStrategy

SIGNATURE_DIGEST_PATTERN = r"^[0-9a-f]{12}$"


class TrafficMode(StrEnum):
    """How client requests reach each revision."""

    ROUTER = "Router"
    GATEWAY_API = "GatewayAPI"
    REPLICAS = "Replicas"


class NoTrafficPolicy(StrEnum):
    """What a canary step without client traffic does."""

    PROMOTE = "Promote"
    WAIT = "Wait"


class GatewayParentRef(WireModel):
    """A Gateway (and optionally one of its listeners) the routes attach to."""

    name: str = Field(max_length=253, pattern=DNS1123_SUBDOMAIN, description="Gateway name.")
    namespace: str | None = Field(
        default=None, max_length=63, pattern=DNS1123_SUBDOMAIN, description="Its namespace."
    )
    section_name: str | None = Field(
        default=None, max_length=253, pattern=DNS1123_SUBDOMAIN, description="A listener."
    )


class GatewayApiSpec(WireModel):
    """Where the HTTPRoute and GRPCRoute of this ModelDeployment attach."""

    parent_refs: list[GatewayParentRef] = Field(
        min_length=1, max_length=8, description="The Gateway(s) that carry the traffic."
    )
    hostnames: list[Annotated[str, Field(max_length=253)]] | None = Field(
        default=None, max_length=16, description="Host names the routes match; all if omitted."
    )


class RouterSpec(WireModel):
    """The built-in HAProxy router of this ModelDeployment."""

    replicas: int = Field(default=2, ge=1, le=20, description="Router pods (2 survives a drain).")


class TrafficSpec(WireModel):
    """How requests are split between revisions while a rollout runs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.mode != 'GatewayAPI' || has(self.gatewayAPI)",
                    rules.MSG_GATEWAY_REQUIRED,
                    ".mode",
                )
            ]
        }
    )

    mode: TrafficMode = Field(
        default=TrafficMode.ROUTER,
        description="Router: a per-request split by the built-in HAProxy router. GatewayAPI: "
        "HTTPRoute/GRPCRoute weights on your gateway. Replicas: the Service spreads connections "
        "over every revision's pods (a keep-alive client sticks to one pod).",
    )
    router: RouterSpec = Field(default_factory=RouterSpec, description="Used by Router.")
    gateway_api: GatewayApiSpec | None = Field(
        default=None, alias="gatewayAPI", description="Used by GatewayAPI."
    )

    @model_validator(mode="after")
    def _gateway(self) -> TrafficSpec:
        if self.mode == TrafficMode.GATEWAY_API and self.gateway_api is None:
            raise ValueError(rules.MSG_GATEWAY_REQUIRED)
        return self


class CanarySpec(WireModel):
    """Canary steps and the analysis that gates each one."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.steps) || (self.steps.isSorted() && "
                    "self.steps.all(s, self.steps.exists_one(t, t == s)))",
                    rules.MSG_STEPS_INCREASING,
                    ".steps",
                ),
                cel(
                    "!has(self.steps) || self.steps[size(self.steps) - 1] == 100",
                    rules.MSG_STEPS_END,
                    ".steps",
                ),
            ]
        }
    )

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100],
        min_length=1,
        max_length=10,
        description="Percent of the desired replicas on the new revision, step by step.",
        json_schema_extra={"default": [10, 50, 100]},
    )
    analysis_interval_seconds: int = Field(
        default=15, ge=1, le=3600, description="Seconds between two analyses of the canary."
    )
    failure_threshold: int = Field(
        default=2, ge=1, le=100, description="Consecutive failed analyses before rollback."
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Failed / all requests over one interval."
    )
    max_p99_latency_ms: float | None = Field(
        default=None, gt=0, le=3_600_000, description="p99 latency gate; omitted: none."
    )

    @model_validator(mode="after")
    def _steps(self) -> CanarySpec:
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError(rules.MSG_STEPS_INCREASING)
        if self.steps[-1] != 100:
            raise ValueError(rules.MSG_STEPS_END)
        return self


class RolloutSpec(WireModel):
    """How a new revision replaces the serving one."""

    strategy: RolloutStrategy = Field(
        default=RolloutStrategy.CANARY, description="Canary (stepwise) or Recreate (at once)."
    )
    canary: CanarySpec = Field(default_factory=CanarySpec, description="Used by Canary.")
    progress_deadline_seconds: int = Field(
        default=600, ge=30, le=86400, description="A new revision not ready by then is rolled back."
    )
    traffic: TrafficSpec = Field(
        default_factory=TrafficSpec, description="How requests are split between revisions."
    )
    no_traffic: NoTrafficPolicy = Field(
        default=NoTrafficPolicy.PROMOTE,
        description="A step that sees no client traffic: Promote judges it by its validation "
        "run and moves on after the analysis window; Wait keeps it until traffic comes.",
    )
    accept_signature: str | None = Field(
        default=None,
        min_length=12,
        max_length=12,
        pattern=SIGNATURE_DIGEST_PATTERN,
        description="Opt in to a new revision whose inputs or outputs differ from the serving "
        "one: the digest its IncompatibleSignature condition shows. It is then cut over at once.",
    )
