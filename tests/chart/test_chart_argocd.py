"""The Argo CD health check (Lua), run by lupa on statuses the operator writes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.chart import (
    CHART,
)

# --- the Argo CD health check ------------------------------------------------------------------
HEALTH_LUA = CHART / "docs" / "argocd-health.lua"


def _health(obj: dict[str, Any]) -> dict[str, Any]:
    lupa = pytest.importorskip("lupa", reason="lupa (Lua in Python) is not installed")
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    to_lua = runtime.eval(
        "function(py, conv) local function c(v) return conv(v, c) end return c(py) end"
    )

    def convert(value: Any, recurse: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: recurse(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([recurse(v) for v in value])
        return value

    check = runtime.eval(f"function(obj) {HEALTH_LUA.read_text()} end")
    result = check(to_lua(obj, convert))
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        ({}, 1, "Progressing"),
        ({"phase": "Building", "observedGeneration": 1}, 1, "Progressing"),
        (
            {
                "phase": "Ready",
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "message": "serving r1"}],
            },
            1,
            "Healthy",
        ),
        (
            {
                "phase": "Ready",
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True"}],
            },
            2,
            "Progressing",
        ),
        (
            {
                "phase": "Idle",
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "Idle"}],
            },
            1,
            "Healthy",
        ),
        (
            {
                "phase": "RolledBack",
                "observedGeneration": 2,
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "Degraded", "status": "True", "message": "canary error rate 0.3"},
                ],
            },
            2,
            "Degraded",
        ),
        (
            {
                "phase": "Failed",
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "False", "message": "bad sha256"}],
            },
            1,
            "Degraded",
        ),
    ],
)
def test_argocd_health(status: dict[str, Any], generation: int, expected: str) -> None:
    obj = {"metadata": {"name": "m", "generation": generation}, "spec": {}, "status": status}
    assert _health(obj)["status"] == expected
