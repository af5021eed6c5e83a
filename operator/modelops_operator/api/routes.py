"""The route table a ModelDeployment's traffic router applies: which revision gets what weight.

The operator publishes it (status.traffic, the router's ConfigMap, and the long-poll endpoint
`/routes/<namespace>/<name>`); the router agent in each router pod applies it to HAProxy. Both
ends parse this one model.
"""

from __future__ import annotations

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

    def weights(self) -> dict[int, int]:
        """revision -> weight."""
        return {route.revision: route.weight for route in self.routes}

    def serving(self) -> list[Route]:
        """Routes that get requests."""
        return [route for route in self.routes if route.weight > 0]
