"""The route table a ModelDeployment's traffic router applies: which revision gets what weight.

The operator publishes it (status.traffic, the router's ConfigMap, and the long-poll endpoint
`/routes/<namespace>/<name>`); the router agent in each router pod applies it to HAProxy. Both
ends parse this one model.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from modelops_contract.wire import WireModel

MAX_ROUTES = 16


class Route(WireModel):
    """One revision behind the router: its Service and its share of requests (0-100)."""

    revision: int = Field(ge=0, description="Revision number.")
    service: str = Field(max_length=63, description="The revision's Service, <name>-r<N>.")
    weight: int = Field(ge=0, le=100, description="Percent of requests; 0 drains it.")


class RouteTable(WireModel):
    """Every revision the router knows, with weights summing to 100 (or nothing served yet)."""

    version: int = Field(default=0, ge=0, description="Grows with every change of the table.")
    namespace: str = Field(default="", max_length=63, description="Where the Services live.")
    routes: list[Route] = Field(default_factory=list, max_length=MAX_ROUTES)
    hold_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="How long HAProxy holds a request while no revision can take it (a "
        "revision scaled to zero wakes meanwhile); 0 answers 503 at once.",
    )

    def weights(self) -> dict[int, int]:
        """revision -> weight."""
        return {route.revision: route.weight for route in self.routes}

    def serving(self) -> list[Route]:
        """Routes that get requests."""
        return [route for route in self.routes if route.weight > 0]


class DemandEvent(StrEnum):
    """What the router saw of requests held while no revision could take them."""

    HELD = "held"  # a request is waiting: wake the serving revision
    SERVED = "served"  # a held request got its response after `seconds`
    TIMED_OUT = "timedOut"  # a held request waited hold_seconds and got 503 / UNAVAILABLE


class DemandReport(WireModel):
    """The router agent's report to the operator: `POST /routes/<namespace>/<name>/demand`."""

    event: DemandEvent = Field(description="held, served or timedOut.")
    seconds: float = Field(default=0.0, ge=0, le=86_400, description="How long it was held.")
    count: int = Field(default=1, ge=1, le=1_000_000, description="Requests it stands for.")
