"""Finding 6 of issue 23 through the whole operator: with one build slot, a second build waits,
says so in status, and starts once the first build finished."""

from __future__ import annotations

from pathlib import Path

from modelops_operator.k8s import resources as r
from modelops_operator.render.names import build_job_name
from modelops_operator.settings import Settings
from tests.integration.conftest import RunOperator
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import finish_source, key_of, publish, spec, summary


def _built(cluster: Cluster, name: str) -> dict[str, str]:
    conds = (cluster.md(name).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == "EngineBuilt"), {})


async def test_finding_6_a_build_over_the_cap_waits_in_the_queue_then_starts(
    cluster: Cluster, run_operator: RunOperator, settings: Settings, store: Path
) -> None:
    capped = settings.model_copy(update={"build_max_concurrent": 1})
    build_ns = capped.operator_namespace
    async with run_operator(settings=capped):
        await cluster.create_md("first", spec("a" * 64))
        await finish_source(cluster, capped, "first")
        key = key_of(cluster, "first", capped)
        first = build_job_name("default", "first", key)
        await eventually(lambda: cluster.get(r.JOBS, first, build_ns), what="first build Job")
        await cluster.create_md("second", spec("b" * 64))
        await finish_source(cluster, capped, "second")
        await eventually(
            lambda: _built(cluster, "second").get("reason") == "Queued", what="second Queued"
        )
        assert "position 1" in _built(cluster, "second")["message"]
        second = build_job_name("default", "second", key_of(cluster, "second", capped))
        assert cluster.get(r.JOBS, second, build_ns) is None, "no second build while one runs"
        # the first build finishes: its slot is free and the queued build starts
        publish(store, key)
        await cluster.finish_job(first, summary(key), namespace=build_ns)
        await eventually(lambda: cluster.get(r.JOBS, second, build_ns), 20, what="second Job")
        await eventually(
            lambda: _built(cluster, "second").get("reason") == "Building", what="Building"
        )
