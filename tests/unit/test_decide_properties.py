"""Properties of reconcile over random observed worlds: deterministic, never drops the last
serving pods, monotonic revision numbers, a schema-valid status; and the canary split."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_decide_world import SETTINGS, T0, body, entry, key_of, ready_pod, spec

from modelops_builder.manifest import EngineManifest
from modelops_operator.api import ModelDeployment, ModelDeploymentStatus
from modelops_operator.decide.observed import DecideContext, Observed
from modelops_operator.decide.plan import Apply, Delete
from modelops_operator.decide.reconcile import reconcile
from modelops_operator.decide.rollout import split_canary
from modelops_operator.render.revision import render_deployment

STEPS = [[100], [50, 100], [10, 50, 100], [25, 50, 75, 100]]
STATES = ["RollingOut", "Serving", "Superseded", "RolledBack", "Failed"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[dict[str, Any], Observed, DecideContext]:
    replicas = draw(st.integers(1, 6))
    overrides: dict[str, Any] = {
        "serving.replicas": replicas,
        "rollout.strategy": draw(st.sampled_from(["Canary", "Recreate"])),
        "rollout.canary.steps": draw(st.sampled_from(STEPS)),
    }
    if draw(st.booleans()):
        overrides["scaling"] = {"minReplicas": 1, "maxReplicas": 6, "target": 100}
    generation = draw(st.integers(1, 4))
    annotations = {}
    if draw(st.booleans()):
        annotations["modelops.dev/rollback-to"] = str(draw(st.integers(1, 5)))
    if draw(st.booleans()):
        annotations["modelops.dev/retry"] = draw(st.sampled_from(["a", "b"]))
    md_body = body(spec(**overrides), generation=generation, annotations=annotations)
    key = key_of(md_body)
    md = ModelDeployment.from_body(md_body)
    manifest = EngineManifest.model_validate(entry(key))
    numbers = draw(st.sets(st.integers(1, 5), max_size=3))
    deployments: dict[str, dict[str, Any]] = {}
    pods: dict[str, list[dict[str, Any]]] = {}
    for n in sorted(numbers):
        dep = render_deployment(md, n, manifest, SETTINGS, draw(st.integers(0, 6)))
        if draw(st.booleans()):  # another spec's revision
            dep["metadata"]["annotations"]["modelops.dev/serving-hash"] = "0" * 16
        have = draw(st.integers(0, dep["spec"]["replicas"]))
        dep["status"] = {"replicas": dep["spec"]["replicas"], "readyReplicas": have}
        name = dep["metadata"]["name"]
        deployments[name] = dep
        since = T0 - timedelta(seconds=draw(st.integers(0, 300)))
        crash = draw(st.booleans()) and draw(st.booleans())
        pods[name] = [ready_pod(f"{name}-{i}", since) for i in range(have)]
        if crash:
            pods[name].append(ready_pod(f"{name}-x", since, restarts=5, waiting="CrashLoopBackOff"))
    pointers = st.one_of(st.none(), st.sampled_from(sorted(numbers))) if numbers else st.none()
    started = (T0 - timedelta(seconds=draw(st.integers(0, 900)))).strftime("%Y-%m-%dT%H:%M:%SZ")
    history = [
        {
            "revision": n,
            "engineKey": key,
            "generation": draw(st.integers(1, 4)),
            "state": draw(st.sampled_from(STATES)),
            "time": started,
        }
        for n in sorted(numbers)
    ]
    status = {
        "revision": {
            k: v
            for k, v in (
                ("current", draw(pointers)),
                ("candidate", draw(pointers)),
                ("previous", draw(pointers)),
            )
            if v is not None
        },
        "history": history,
        "replicas": replicas,
        "rollout": {
            "step": draw(st.integers(0, 3)),
            "startedAt": started,
            "stepStartedAt": started,
            "passes": draw(st.integers(0, 2)),
            "failures": draw(st.integers(0, 1)),
        },
    }
    md_body["status"] = status
    observed = Observed(
        deployments=deployments,
        pods=pods,
        configmaps=frozenset(deployments),
        store_entry=entry(key) if draw(st.booleans()) else None,
    )
    now = T0 + timedelta(seconds=draw(st.integers(0, 400)))
    return md_body, observed, DecideContext(now, SETTINGS, {}, draw(st.booleans()))


def _after(observed: Observed, plan: Any) -> dict[str, int]:
    """spec.replicas of each observed revision once the plan ran (deleted ones drop out)."""
    replicas = {n: d["spec"]["replicas"] for n, d in observed.deployments.items()}
    for action in plan.changes:
        if isinstance(action, Delete) and action.kind == "Deployment":
            replicas.pop(action.name, None)
        elif isinstance(action, Apply) and action.manifest["kind"] == "Deployment":
            name = action.manifest["metadata"]["name"]
            if name in replicas:
                replicas[name] = action.manifest["spec"]["replicas"]
    return replicas


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(worlds())
def test_same_inputs_give_the_same_plan(
    world: tuple[dict[str, Any], Observed, DecideContext],
) -> None:
    md_body, observed, ctx = world
    first = reconcile(copy.deepcopy(md_body), observed, ctx)
    second = reconcile(copy.deepcopy(md_body), observed, ctx)
    assert first == second
    ModelDeploymentStatus.model_validate(first.status)  # what the CRD schema will accept
    assert len(first.status["history"]) <= 10


@FAST
@given(worlds())
def test_no_plan_takes_away_the_last_ready_pods(
    world: tuple[dict[str, Any], Observed, DecideContext],
) -> None:
    md_body, observed, ctx = world
    plan = reconcile(copy.deepcopy(md_body), observed, ctx)
    serving = {n for n, d in observed.deployments.items() if d["status"]["readyReplicas"] >= 1}
    if not serving:
        return
    after = _after(observed, plan)
    assert any(after.get(n, 0) > 0 for n in serving), (serving, after, plan.changes)


@FAST
@given(worlds())
def test_new_revisions_get_numbers_never_used_before(
    world: tuple[dict[str, Any], Observed, DecideContext],
) -> None:
    md_body, observed, ctx = world
    plan = reconcile(copy.deepcopy(md_body), observed, ctx)
    seen = {
        int(d["metadata"]["labels"]["modelops.dev/revision"]) for d in observed.deployments.values()
    }
    seen |= {h["revision"] for h in md_body["status"]["history"]}
    for action in plan.changes:
        if isinstance(action, Apply) and action.manifest["kind"] == "Deployment":
            number = int(action.manifest["metadata"]["labels"]["modelops.dev/revision"])
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
