"""The store as a trust boundary, through the whole operator (kopf + kmock + a store folder):
an entry changed after publishing is refused and rebuilt, never served; a tenant who cannot read
a private source gets no engine from a store hit, even though the entry is there."""

from __future__ import annotations

import json
from pathlib import Path

from modelops_contract.staging import StageSummary
from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import build_job_name, revision_name, source_job_name
from modelops_operator.settings import Settings
from tests.support.engine_store import rewrite_manifest
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import (
    build_and_serve,
    condition,
    finish_source,
    key_of,
    phase,
    publish,
    spec,
    summary,
)


async def test_an_entry_changed_after_publishing_is_refused_and_rebuilt(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    await cluster.create_md("tamper", spec())
    key = await build_and_serve(cluster, store, settings, "tamper")
    served = cluster.get(r.DEPLOYMENTS, revision_name("tamper", 1))
    assert served is not None
    pinned = served["metadata"]["annotations"]["modelops.dev/manifest-sha256"]
    # Someone with write access to the volume raises the batch size in engine.json; the next
    # pod that starts refuses it (its pin) and says so in its pull's termination message.
    rewrite_manifest(store, key, maxBatchSize=64)
    pod = await cluster.add_pod(revision_name("tamper", 1), "10.250.1.2", ready=False, index=1)
    pod["status"]["initContainerStatuses"] = [
        {
            "name": "pull-engine",
            "ready": False,
            "restartCount": 1,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {
                "terminated": {
                    "exitCode": 3,
                    "message": "modelops-build pull: EngineTampered: .../engine.json has "
                    "sha256 0d1f..., the operator verified 9a8b...",
                }
            },
        }
    ]
    await cluster.patch_status(r.PODS, pod["metadata"]["name"], pod["status"])
    await eventually(
        lambda: (
            condition(cluster, "tamper", "EngineBuilt").get("reason")
            in ("Rebuilding", "FetchingSource")
        ),
        what="the entry refused",
    )
    assert cluster.get(r.DEPLOYMENTS, revision_name("tamper", 2)) is None, "never served"
    # Rebuilt from the source: a source Job that keeps the bytes, a build that replaces.
    await finish_source(cluster, settings, "tamper")
    build_ns = settings.operator_namespace
    job = build_job_name("default", "tamper", key)
    await eventually(
        lambda: (
            (cluster.get(r.JOBS, job, build_ns) or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("modelops.dev/replaces")
        ),
        what="the replacing build",
    )
    refusals = await eventually(
        lambda: [e for e in cluster.events("tamper") if e["reason"] == "EngineRefused"],
        what="the EngineRefused Event",
    )
    assert "changed after publishing" in refusals[0]["message"]
    rebuilt = publish(store, key)  # what its publishing step leaves: sealed again
    await cluster.finish_job(job, summary(key), namespace=build_ns)
    r2 = revision_name("tamper", 2)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, r2), what="a revision of the new entry")
    deployment = cluster.get(r.DEPLOYMENTS, r2)
    assert deployment is not None
    assert deployment["metadata"]["annotations"]["modelops.dev/manifest-sha256"] == rebuilt
    assert (
        rebuilt != pinned
        or "createdAt" in (store / key.removeprefix("sha256:") / "engine.json").read_text()
    )
    assert json.loads((store / key.removeprefix("sha256:") / "engine.json").read_text())["mac"]


async def test_a_tenant_without_access_gets_no_engine_from_a_store_hit(
    cluster: Cluster, operator: Operator, store: Path, settings: Settings
) -> None:
    # Team A builds its private model: the entry is in the store.
    await cluster.create_md("private", spec(), namespace="team-a")
    key = key_of(cluster, "private", settings, "team-a")
    await finish_source(cluster, settings, "private", namespace="team-a")
    build = build_job_name("team-a", "private", key)
    await eventually(
        lambda: cluster.get(r.JOBS, build, settings.operator_namespace), what="A's build"
    )
    publish(store, key)
    await cluster.finish_job(build, summary(key), namespace=settings.operator_namespace)
    # Team B knows the sha256 and asks for the very same engine key.
    await cluster.create_md("copycat", spec(), namespace="team-b")
    assert key_of(cluster, "copycat", settings, "team-b") == key
    job = source_job_name("copycat", key)
    await eventually(lambda: cluster.get(r.JOBS, job, "team-b"), what="B's source Job")
    source = cluster.get(r.JOBS, job, "team-b")
    assert source is not None
    assert source["metadata"]["annotations"]["modelops.dev/keep"] == "false", "a hit: prove only"
    # B's credentials cannot read A's bucket: the fetch fails, there is no receipt.
    denied = StageSummary(
        ok=False, reason="FetchFailed", message="s3://team-a-models/m.onnx: AccessDenied 403"
    )
    await cluster.finish_job(job, denied.to_wire(), ok=False, namespace="team-b")
    await eventually(lambda: phase(cluster, "copycat", "team-b") == "Failed", what="Failed")
    built = condition_in(cluster, "copycat", "team-b", "EngineBuilt")
    assert (built["status"], built["reason"]) == ("False", "FetchFailed")
    assert "AccessDenied" in built["message"]
    assert cluster.names(r.DEPLOYMENTS, "team-b") == [], "no revision, no engine"
    assert "sourceAccess" not in cluster.md("copycat", "team-b")["status"]


def condition_in(cluster: Cluster, name: str, namespace: str, ctype: str) -> dict[str, str]:
    conds = (cluster.md(name, namespace).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == ctype), {})
