"""Properties of reconcile over random observed worlds: deterministic, never drops the last
serving pods, monotonic revision numbers, a schema-valid status; and the canary split."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops_operator.api import ModelDeploymentStatus
from modelops_operator.decide.body import parse_body
from modelops_operator.decide.canary_steps import split_canary
from modelops_operator.decide.inputs import DecideContext, Observed
from modelops_operator.decide.plan import Apply
from modelops_operator.decide.reconcile import reconcile
from tests.support.decide_world import FAST, replicas_after, worlds


@FAST
@given(worlds())
def test_same_inputs_give_the_same_plan(
    world: tuple[dict[str, Any], Observed, DecideContext],
) -> None:
    md_body, observed, ctx = world
    first = reconcile(parse_body(copy.deepcopy(md_body)), observed, ctx)
    second = reconcile(parse_body(copy.deepcopy(md_body)), observed, ctx)
    assert first == second
    ModelDeploymentStatus.model_validate(first.status)  # what the CRD schema will accept
    assert len(first.status["history"]) <= 10


@FAST
@given(worlds())
def test_no_plan_takes_away_the_last_ready_pods(
    world: tuple[dict[str, Any], Observed, DecideContext],
) -> None:
    md_body, observed, ctx = world
    plan = reconcile(parse_body(copy.deepcopy(md_body)), observed, ctx)
    serving = {n for n, d in observed.deployments.items() if d["status"]["readyReplicas"] >= 1}
    if not serving:
        return
    after = replicas_after(observed, plan)
    assert any(after.get(n, 0) > 0 for n in serving), (serving, after, plan.changes)


@FAST
@given(worlds())
def test_new_revisions_get_numbers_never_used_before(
    world: tuple[dict[str, Any], Observed, DecideContext],
) -> None:
    md_body, observed, ctx = world
    plan = reconcile(parse_body(copy.deepcopy(md_body)), observed, ctx)
    seen = {
        int(d["metadata"]["labels"]["modelops.dev/revision"]) for d in observed.deployments.values()
    }
    seen |= {h["revision"] for h in md_body["status"]["history"]}
    for action in plan.changes:
        if not isinstance(action, Apply) or action.manifest["kind"] != "Deployment":
            continue
        labels = action.manifest["metadata"]["labels"]
        if "modelops.dev/revision" in labels:  # not the router's
            number = int(labels["modelops.dev/revision"])
            if action.manifest["metadata"]["name"] not in observed.deployments:
                assert number > max(seen, default=0)


@given(st.integers(0, 1000), st.integers(1, 100))
def test_canary_split_sums_to_desired(desired: int, percent: int) -> None:
    new, old = split_canary(desired, percent)
    assert new + old == desired
    assert 0 <= old <= desired
    if desired:
        assert new >= 1
    if percent == 100:
        assert (new, old) == (desired, 0)


@given(st.integers(1, 1000), st.integers(1, 99))
def test_canary_split_grows_with_the_step(desired: int, percent: int) -> None:
    assert split_canary(desired, percent)[0] <= split_canary(desired, percent + 1)[0]


@pytest.mark.parametrize(
    ("total", "percent", "expected"),
    [
        (10, 10, (1, 9)),
        (10, 50, (5, 5)),
        (3, 1, (1, 2)),  # any step above 0% runs at least one new replica
        (7, 50, (4, 3)),
        (4, 100, (4, 0)),
        (0, 50, (0, 0)),
        (1, 1, (1, 0)),
    ],
)
def test_canary_split_table(total: int, percent: int, expected: tuple[int, int]) -> None:
    assert split_canary(total, percent) == expected
