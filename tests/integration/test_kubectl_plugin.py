"""`kubectl modelops` through the REAL kubectl, against the operator on kmock's API server.

kubectl finds the plugin on PATH (`kubectl plugin list`), runs it with the kubeconfig written by
tests/support/kubectl_plugin.py, and the plugin reads and steers a ModelDeployment while the
real operator rolls it out: a canary is paused, held at a manual weight, aborted, retried and
promoted, each effect checked on the resource and its children; every refusal is checked too.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import kmock
import pytest

from modelops_cli.plugin_rbac import GROUP, every_call
from modelops_operator.handlers import Operator
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import revision_name
from modelops_operator.settings import Settings
from tests.support.kubectl_plugin import Kubectl, kubectl_binary
from tests.support.kubernetes_emulator import Cluster, eventually, rbac_call
from tests.support.operator_flow import build_and_serve, finish_build, phase, validate_revision

Obj = dict[str, Any]
NAME = "canary"
R1, R2, R3 = (revision_name(NAME, n) for n in (1, 2, 3))


def canary_spec(sha: str) -> Obj:
    """Four replicas, canary 25% -> 50% -> 100%: without analyses a step holds for 10
    minutes, so the canary stays at its first step while the test steers it."""
    return {
        "model": {"source": {"uri": "https://models.example.com/m.onnx", "sha256": sha}},
        "build": {"engine": "onnxruntime", "precision": "fp32", "maxBatchSize": 8},
        "serving": {"replicas": 4},
        "rollout": {
            "traffic": {"mode": "Replicas"},
            "strategy": "Canary",
            "canary": {
                "steps": [25, 50, 100],
                "analysisIntervalSeconds": 600,
                "failureThreshold": 2,
            },
        },
    }


@pytest.fixture
def kubectl(api: kmock.KubernetesEmulator, tmp_path: Path) -> Kubectl:
    """The real kubectl, the plugin on PATH, a kubeconfig for the emulator."""
    return Kubectl(kubectl_binary(), str(api.url).rstrip("/"), tmp_path / "home")


def replicas(cluster: Cluster, name: str) -> int:
    dep = cluster.get(r.DEPLOYMENTS, name)
    assert dep is not None, name
    return int(dep["spec"]["replicas"])


def annotations(cluster: Cluster) -> dict[str, str]:
    return dict(cluster.md(NAME)["metadata"].get("annotations") or {})


def status(cluster: Cluster) -> Obj:
    return dict(cluster.md(NAME).get("status") or {})


def history(cluster: Cluster, revision: int) -> Obj:
    return next(h for h in status(cluster)["history"] if h["revision"] == revision)


async def refusals(kubectl: Kubectl, cases: dict[tuple[str, ...], str]) -> None:
    """Each command exits 1 with its refusal, and writes nothing."""
    ran = await asyncio.gather(*(kubectl.modelops(*args) for args in cases))
    for (args, expected), result in zip(cases.items(), ran, strict=True):
        assert result.code == 1, (args, result)
        assert "refused:" in result.out, (args, result)
        assert expected in " ".join(result.out.split()), (args, result.out)


def save(path: Path, text: str) -> None:
    path.write_text(text)


async def ready_pods(cluster: Cluster, deployment: str, prefix: str) -> None:
    """The Deployment's pods (as many as it wants) run and are ready."""
    for index in range(replicas(cluster, deployment)):
        if cluster.get(r.PODS, f"{deployment}-{index}") is None:
            await cluster.add_pod(deployment, f"{prefix}.{index + 1}", index=index)
    await cluster.ready_deployment(deployment)


async def test_canary_paused_weighted_aborted_retried_promoted_through_kubectl(
    cluster: Cluster,
    operator: Operator,
    store: Path,
    settings: Settings,
    kubectl: Kubectl,
    api: kmock.KubernetesEmulator,
) -> None:
    listed = await kubectl.run("plugin", "list")
    assert listed.code == 0, listed
    assert any(line.endswith("/kubectl-modelops") for line in listed.out.split()), listed.out

    await cluster.create_md(NAME, canary_spec("a" * 64))
    await build_and_serve(cluster, store, settings, NAME, ip="10.1.0.1")
    await ready_pods(cluster, R1, "10.1.0")
    await eventually(lambda: phase(cluster, NAME) == "Ready", what="Ready")
    await refusals(
        kubectl,
        {
            ("promote", NAME): "nothing to promote: no revision of canary is rolling out",
            ("abort", NAME): "nothing to abort: no revision of canary is rolling out (phase Ready)",
            ("pause", NAME): "nothing to pause",
            ("resume", NAME): "nothing to resume",
            ("set-weight", NAME, "50"): "nothing to set-weight",
            ("retry", NAME): "nothing to retry: generation 1 of canary has no failed build",
            ("rollback-to", NAME, "1"): "revision 1 is what serves now",
            ("rollback-to", NAME, "9"): "revision 9 cannot serve again",
        },
    )
    assert not any(k.startswith("modelops.dev/") for k in annotations(cluster))

    # A new model: revision 2 is the canary, validated, at step 1 (25%: 1 new, 3 old).
    await cluster.update_spec(NAME, {"model": {"source": {"sha256": "b" * 64}}})
    await finish_build(cluster, store, settings, NAME)
    await validate_revision(cluster, NAME, 2, ip="10.2.0.1")
    await eventually(lambda: (status(cluster).get("rollout") or {}).get("validated"), what="valid")
    await eventually(lambda: replicas(cluster, R1) == 3, what="r1 at its share")
    await refusals(
        kubectl,
        {
            ("resume", NAME): "revision 2 is not paused and has no manual weight",
            ("set-weight", NAME, "150"): "set-weight takes a percent from 0 to 100, not 150",
            ("retry", NAME): "nothing to retry",
            ("rollback-to", NAME, "2"): "revision 2 cannot serve again",
        },
    )

    # The tree, through kubectl, in 80 columns; the same facts as JSON.
    tree = await kubectl.modelops("get", NAME)
    assert tree.code == 0, tree
    assert max(len(line) for line in tree.out.splitlines()) <= 80
    for expected in (
        "default/canary  RollingOut",
        "revision 2 candidate",
        "revision 1 current",
        "validation: passed",
        "pod canary-r2-0  ready  restarts 0",
        "analysis revision 2 step 1/3 (25%) validated",
        "RevisionCreated",
    ):
        assert expected in tree.out, (expected, tree.out)
    document = json.loads((await kubectl.modelops("get", NAME, "-o", "json")).out)
    assert [row["revision"] for row in document["revisions"]] == [2, 1]
    assert document["revisions"][1]["desired"] == 3
    assert document["analysis"]["step"] == "1/3 (25%)"
    listing = await kubectl.modelops("list")
    assert "canary" in listing.out
    assert "RollingOut" in listing.out
    assert "1->2" in listing.out

    # pause: one annotation naming the candidate; the step holds and --watch shows it.
    watch = await kubectl.start("modelops", "get", NAME, "--watch", "--interval", "0.3")
    try:
        paused = await kubectl.modelops("pause", NAME)
        assert paused.code == 0, paused
        assert "revision 2 holds at step 1/3 (25%) until resume" in " ".join(paused.out.split())
        assert annotations(cluster)["modelops.dev/pause"] == "2"
        seen = b""
        assert watch.stdout is not None
        while b"paused (modelops.dev/pause)" not in seen:
            seen += await asyncio.wait_for(watch.stdout.read(4096), 20)
    finally:
        watch.terminate()
        await watch.wait()

    def steered() -> list[str]:
        return [e["message"] for e in cluster.events(NAME) if e["reason"] == "RolloutSteered"]

    await eventually(lambda: steered(), what="a RolloutSteered Event")
    assert steered() == ["revision 2: paused (modelops.dev/pause)"]
    capture = os.environ.get("MODELOPS_CLI_CAPTURE")
    if capture:  # docs/cli.md shows this tree
        save(Path(capture), (await kubectl.modelops("get", NAME)).out)
    assert cluster.md(NAME)["spec"]["model"]["source"]["sha256"] == "b" * 64, "no spec edit"

    # set-weight 50: a manual step on 2 of 4 replicas; the old revision shrinks once it is up.
    weighted = await kubectl.modelops("set-weight", NAME, "50")
    assert weighted.code == 0, weighted
    assert annotations(cluster)["modelops.dev/weight"] == "2:50"
    await eventually(lambda: replicas(cluster, R2) == 2, what="r2 at 50%")
    await ready_pods(cluster, R2, "10.2.0")
    await eventually(lambda: replicas(cluster, R1) == 2, what="r1 at 50%")

    # abort --wait: rolled back at once; r1 takes all replicas; the steering is cleared.
    aborted = await kubectl.modelops("abort", NAME, "--wait", "--timeout", "30")
    assert aborted.code == 0, aborted
    assert "revision 2 is rolled back now" in " ".join(aborted.out.split())
    assert "RolledBack" in aborted.out
    marks = annotations(cluster)
    assert marks["modelops.dev/abort"] == "2"
    assert "modelops.dev/pause" not in marks
    assert "modelops.dev/weight" not in marks
    assert (history(cluster, 2)["state"], history(cluster, 2)["reason"]) == (
        "RolledBack",
        "Aborted: aborted by modelops.dev/abort",
    )
    assert replicas(cluster, R1) == 4
    await ready_pods(cluster, R1, "10.1.0")
    await eventually(lambda: replicas(cluster, R2) == 0, what="r2 scaled to 0")
    await refusals(
        kubectl,
        {
            ("abort", NAME): "nothing to abort: no revision of canary is rolling out",
            ("promote", NAME): "nothing to promote",
        },
    )

    # retry: a new attempt of the same generation (revision 3, the same engine).
    retried = await kubectl.modelops("retry", NAME)
    assert retried.code == 0, retried
    assert "revision 2 (Aborted) is tried again as a new revision" in " ".join(retried.out.split())
    assert annotations(cluster)["modelops.dev/retry"]
    await validate_revision(cluster, NAME, 3, ip="10.3.0.1")
    await eventually(lambda: status(cluster)["revision"].get("candidate") == 3, what="r3")
    await eventually(lambda: (status(cluster).get("rollout") or {}).get("validated"), what="valid")

    # promote --wait: the rest of the steps skipped; Ready on revision 3.
    promoting = asyncio.ensure_future(
        kubectl.modelops("promote", NAME, "--wait", "--timeout", "40")
    )
    await eventually(lambda: replicas(cluster, R3) == 4, what="r3 at 100%")
    await ready_pods(cluster, R3, "10.3.0")
    promoted = await promoting
    assert promoted.code == 0, promoted
    assert "revision 3 skips its remaining canary steps" in " ".join(promoted.out.split())
    assert "Ready (current 3)" in promoted.out
    assert status(cluster)["revision"] == {"current": 3, "previous": 1}
    assert history(cluster, 3)["state"] == "Serving"
    reasons = [e["reason"] for e in cluster.events(NAME)]
    assert "StepPromoted" not in reasons
    await eventually(lambda: replicas(cluster, R1) == 0, what="r1 scaled to 0")

    # rollback-to 1 --wait: the old revision again, at once, pinned.
    back = asyncio.ensure_future(
        kubectl.modelops("rollback-to", NAME, "1", "--wait", "--timeout", "40")
    )
    await eventually(lambda: replicas(cluster, R1) == 4, what="r1 back")
    await ready_pods(cluster, R1, "10.1.0")
    rolled = await back
    assert rolled.code == 0, rolled
    assert annotations(cluster)["modelops.dev/rollback-to"] == "1"
    assert status(cluster)["revision"]["current"] == 1
    await refusals(kubectl, {("retry", NAME): "pinned by modelops.dev/rollback-to"})
    assert plugin_calls(api) <= every_call(), "docs/cli.md lists every call the plugin makes"
    assert (GROUP, "modeldeployments", "patch") in plugin_calls(api)


async def test_contexts_namespaces_logs_and_errors(
    cluster: Cluster, kubectl: Kubectl, api: kmock.KubernetesEmulator
) -> None:
    await cluster.create_md(NAME, canary_spec("a" * 64))
    await cluster.create_md("other-model", canary_spec("c" * 64), namespace="other")
    # --context elsewhere uses that context's namespace; -n overrides it; -A lists both.
    elsewhere = await kubectl.modelops("get", NAME, "--context", "elsewhere")
    assert elsewhere.code == 1
    assert "canary not found in other" in " ".join(elsewhere.err.split())
    here = await kubectl.modelops("get", NAME, "--context", "elsewhere", "-n", "default")
    assert here.code == 0, here
    assert "default/canary  Pending" in here.out
    every = await kubectl.modelops("list", "-A")
    assert "other-model" in every.out
    assert "canary" in every.out
    assert "other-model" not in (await kubectl.modelops("list")).out
    missing = await kubectl.modelops("get", NAME, "--context", "nowhere")
    assert missing.code == 1
    assert "context 'nowhere' is not in the kubeconfig" in missing.err

    # A revision's logs by name: the kubelet's answer for each of its Triton pods.
    await cluster.create_md("served", canary_spec("a" * 64))
    await cluster.patch_status(
        r.MODELDEPLOYMENTS, "served", {"revision": {"current": 1}, "phase": "Ready"}
    )
    labels = {
        "app.kubernetes.io/name": "triton",
        "modelops.dev/deployment": "served",
        "modelops.dev/revision": "1",
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "served-r1-abc12", "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "triton", "image": "triton"}]},
    }
    await cluster._send("POST", r.PODS.path("default"), pod)
    api["get /api/v1/namespaces/default/pods/served-r1-abc12/log"] << b"I1206 model ready\n"
    logs = await kubectl.modelops("logs", "served")
    assert logs.code == 0, logs
    assert "revision 1: pod default/served-r1-abc12 triton" in logs.out
    assert "I1206 model ready" in logs.out
    none = await kubectl.modelops("logs", "served", "--revision", "7")
    assert none.code == 1
    assert "revision 7 of served has no pods" in none.out
    assert plugin_calls(api) <= every_call(), "docs/cli.md lists every call the plugin makes"
    assert ("", "pods/log", "get") in plugin_calls(api)


def plugin_calls(api: kmock.KubernetesEmulator) -> set[tuple[str, str, str]]:
    """The RBAC calls the plugin made (its User-Agent)."""
    return {
        call
        for request in api
        if str(request.headers.get("User-Agent", "")).startswith("kubectl-modelops")
        and (call := rbac_call(request)) is not None
    }
