"""decide/router_gate.py: the Service selects the router, and Ready waits until clients reach
the model through a router pod that runs the newest table, everywhere."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from modelops_operator.api import TrafficMode, TrafficStatus
from modelops_operator.decide.router_gate import gate, wanted_selector
from modelops_operator.decide.traffic import RouterReport
from modelops_operator.render.router import router_selector
from modelops_operator.render.service import service_selector
from tests.support.decide_world import T0

SETTLE = 5.0
STATUS = TrafficStatus(mode=TrafficMode.ROUTER, version=4)


def stamp(seconds_ago: float) -> str:
    return (T0 - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def service(selector: dict[str, str], since_ago: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "resnet"}
    if since_ago is not None:
        meta["annotations"] = {"modelops.dev/selects-router-since": stamp(since_ago)}
    return {"metadata": meta, "spec": {"selector": selector}}


def pod(ready_ago: float | None, deleting: bool = False) -> dict[str, Any]:
    """A router pod Ready since `ready_ago` seconds (None: not Ready)."""
    meta: dict[str, Any] = {"name": "resnet-router-0"}
    if deleting:
        meta["deletionTimestamp"] = stamp(0)
    condition = (
        {"type": "Ready", "status": "False"}
        if ready_ago is None
        else {"type": "Ready", "status": "True", "lastTransitionTime": stamp(ready_ago)}
    )
    return {"metadata": meta, "status": {"conditions": [condition]}}


def runs(version: int) -> RouterReport:
    return RouterReport(pods=1, ready_pods=1, applied_versions=(version,))


ROUTED = service(router_selector("resnet"))
TRITON = service(service_selector("resnet"))


@pytest.mark.parametrize(
    ("svc", "pods", "report", "was_ready", "waiting", "recheck"),
    [
        (None, [pod(60)], runs(4), False, "does not select the router", None),
        (TRITON, [pod(60)], runs(4), True, "does not select the router", None),
        (ROUTED, [], runs(4), True, "no router pod is ready", None),
        (ROUTED, [pod(None)], runs(4), True, "no router pod is ready", None),
        (ROUTED, [pod(60, deleting=True)], runs(4), True, "no router pod is ready", None),
        (ROUTED, [pod(60)], None, False, "route table version 4", 1.0),
        (ROUTED, [pod(60)], runs(3), False, "route table version 4", 1.0),
        # Ready just now: the endpoint change has not reached every node yet.
        (ROUTED, [pod(2)], runs(4), False, "within 5s", 4.0),
        (ROUTED, [pod(2), pod(30)], runs(4), False, None, None),
        # The Service moved to the router 1 s ago (a switch from another mode).
        (service(router_selector("resnet"), 1), [pod(60)], runs(4), False, "within 5s", 5.0),
        (service(router_selector("resnet"), 9), [pod(60)], runs(4), False, None, None),
        (ROUTED, [pod(60)], runs(4), False, None, None),
        # Once Ready, a Ready router pod is enough (its readiness: it runs the newest table).
        (ROUTED, [pod(60)], runs(3), True, None, None),
    ],
)
def test_gate(
    svc: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    report: RouterReport | None,
    was_ready: bool,
    waiting: str | None,
    recheck: float | None,
) -> None:
    found = gate(
        md_name="resnet",
        service=svc,
        pods=pods,
        report=report,
        status=STATUS,
        now=T0,
        settle_seconds=SETTLE,
        was_ready=was_ready,
    )
    if waiting is None:
        assert found.waiting is None
    else:
        assert found.waiting is not None
        assert waiting in found.waiting
    assert found.recheck_after == (pytest.approx(recheck) if recheck is not None else None)


@pytest.mark.parametrize(
    ("mode", "svc", "serves", "router"),
    [
        (TrafficMode.ROUTER, None, False, True),  # from its creation
        (TrafficMode.ROUTER, ROUTED, False, True),  # never back to the Triton pods
        (TrafficMode.ROUTER, TRITON, False, False),  # a switch waits for the router
        (TrafficMode.ROUTER, TRITON, True, True),
        (TrafficMode.REPLICAS, ROUTED, True, False),
        (TrafficMode.GATEWAY_API, None, True, False),
    ],
)
def test_wanted_selector(
    mode: TrafficMode, svc: dict[str, Any] | None, serves: bool, router: bool
) -> None:
    expected = router_selector("resnet") if router else service_selector("resnet")
    assert wanted_selector(mode, "resnet", svc, serves) == expected
