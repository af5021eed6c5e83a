"""Finding 3 of issue 23: each router gets the token of its own table, and the agent's backoff."""

from __future__ import annotations

import pytest

from modelops_contract import integrity
from modelops_operator.render.router import ROUTE_TOKEN_ENV, render_router_deployment
from modelops_operator.router.serve import MAX_BACKOFF_SECONDS, backoff_seconds
from tests.support.decide_world import SETTINGS, TRANSFER_KEY
from tests.support.render_cases import make_md


def _agent_env(settings_url: str | None) -> dict[str, str]:
    settings = SETTINGS.model_copy(update={"routes_url": settings_url})
    pod = render_router_deployment(make_md(), settings)["spec"]["template"]["spec"]
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    return {e["name"]: e["value"] for e in agent.get("env", [])}


def test_finding_3_router_pods_carry_the_token_of_their_own_table_only() -> None:
    env = _agent_env("http://modelops-operator.modelops-system.svc:8080")
    scope = integrity.route_scope("ml", "bert")
    assert integrity.token_valid(TRANSFER_KEY.encode(), scope, env[ROUTE_TOKEN_ENV])
    assert not integrity.token_valid(
        TRANSFER_KEY.encode(), integrity.route_scope("ml", "other"), env[ROUTE_TOKEN_ENV]
    )
    assert ROUTE_TOKEN_ENV not in _agent_env(None)  # no feed, no token


@pytest.mark.parametrize(
    ("failures", "retry_after", "seconds"),
    [
        (1, None, 1.0),
        (2, None, 2.0),
        (4, None, 8.0),
        (20, None, MAX_BACKOFF_SECONDS),
        (1, "5", 5.0),
        (3, "1", 4.0),
        (1, "100000", MAX_BACKOFF_SECONDS),
        (1, "soon", 1.0),
        (1, "\u00b2", 1.0),
    ],
)
def test_finding_3_agent_backoff_doubles_and_honours_retry_after(
    failures: int, retry_after: str | None, seconds: float
) -> None:
    assert backoff_seconds(failures, retry_after) == seconds
