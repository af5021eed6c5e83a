"""`kubectl modelops`'s pure parts: the kubeconfig, ages, pods, the tree and the list."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from modelops_cli.describe import age, describe, pod_row
from modelops_cli.kubeconfig import KubeconfigError, load_target
from modelops_cli.snapshot import Snapshot
from modelops_cli.steer import follow
from modelops_cli.tree import last_decision, render_list, render_tree
from modelops_operator.decide.steering_rules import Verb

NOW = datetime(2026, 12, 6, 8, 0, 0, tzinfo=UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (7199, "119m"), (7200, "2h"), (172800, "2d")],
)
def test_age_as_kubectl_shows_it(seconds: int, expected: str) -> None:
    assert age(stamp(seconds), NOW) == expected


def test_age_of_nothing() -> None:
    assert age(None, NOW) == "-"


def test_pod_row_names_the_last_termination_and_the_wait() -> None:
    pod = {
        "metadata": {"name": "m-r2-0", "creationTimestamp": stamp(30)},
        "spec": {"nodeName": "gpu-7"},
        "status": {
            "containerStatuses": [
                {
                    "ready": False,
                    "restartCount": 3,
                    "lastState": {"terminated": {"reason": "OOMKilled"}},
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ]
        },
    }
    assert pod_row(pod, NOW) == {
        "name": "m-r2-0",
        "ready": False,
        "restarts": 3,
        "node": "gpu-7",
        "lastTermination": "OOMKilled",
        "waiting": "CrashLoopBackOff",
        "age": "30s",
    }


def md(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "m",
            "namespace": "ml",
            "generation": 2,
            "creationTimestamp": stamp(600),
            "annotations": {"modelops.dev/pause": "2"},
        },
        "spec": {
            "model": {"source": {"uri": "s3://b/m.onnx"}},
            "build": {"engine": "onnxruntime"},
            "rollout": {"canary": {"steps": [25, 100], "failureThreshold": 3}},
        },
        "status": status,
    }


def deployment(number: int, replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"m-r{number}",
            "labels": {"app.kubernetes.io/name": "triton", "modelops.dev/revision": str(number)},
            "annotations": {"modelops.dev/manifest-sha256": "ab" * 32},
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


ROLLING = md(
    phase="RollingOut",
    revision={"current": 1, "candidate": 2},
    rollout={"step": 0, "validated": True, "passes": 1, "failures": 0, "note": "errorRate 0"},
    traffic={
        "mode": "Router",
        "weights": [{"revision": 1, "weight": 75}, {"revision": 2, "weight": 25}],
    },
    metrics={"inferencesPerSecond": 12.5, "p99LatencyMs": 3.2, "errorRate": 0.0},
    lastScale={"from": 2, "to": 4, "reason": "queueTime 9100us > 5000us", "time": stamp(60)},
    history=[
        {"revision": 1, "state": "Serving", "time": stamp(300), "signature": "0123456789ab"},
        {"revision": 2, "state": "RollingOut", "time": stamp(30), "signature": "ba9876543210"},
    ],
    validation={"revision": 2, "passed": True, "maxAbsError": 1e-7},
)


def test_describe_and_tree_of_a_canary() -> None:
    snapshot = Snapshot(
        md=ROLLING,
        deployments=[deployment(1, 3, 3), deployment(2, 1, 1)],
        events=[
            {"type": "Warning", "reason": "PodStuck", "message": "x", "lastTimestamp": stamp(5)}
        ],
        now=NOW,
    )
    found = describe(snapshot)
    assert [(r["revision"], r["state"], r["weight"]) for r in found["revisions"]] == [
        (2, "candidate", 25),
        (1, "current", 75),
    ]
    assert found["revisions"][0]["validation"]["passed"] is True
    assert found["analysis"]["step"] == "1/2 (25%)"
    assert found["analysis"]["failureThreshold"] == 3
    assert found["steering"]["pause"] == 2
    console = Console(width=80, record=True, color_system=None)
    console.print(render_tree(found))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for expected in (
        "ml/m  RollingOut  gen 2  age 10m",
        "revision 2 candidate  weight 25%  1/1 ready  sig ba9876543210",
        "revision 1 current  weight 75%  3/3 ready  sig 0123456789ab",
        "validation: passed (max abs err 1e-07)",
        "passes 1 failures 0/3",
        "steered: pause 2",
        "traffic Router r1 75% / r2 25%",
        "triton 12.5 inf/s · p99 3.2 ms",
        "autoscaler 2 -> 4: queueTime 9100us > 5000us",
        "5s PodStuck x",
    ):
        assert expected in text, (expected, text)


def test_tree_of_an_idle_model_deployment() -> None:
    idle = md(
        phase="Idle",
        revision={"current": 1},
        idle={"since": stamp(900), "wokeAt": stamp(3600), "coldStartSeconds": 7.25},
    )
    console = Console(width=80, record=True, color_system=None)
    console.print(render_tree(describe(Snapshot(md=idle, now=NOW))))
    text = console.export_text()
    assert "ml/m  Idle  gen 2" in text
    assert "scale to zero idle for 15m · woke 60m ago · cold start 7.2 s" in text


def test_list_shows_weights_and_the_newest_decision() -> None:
    assert last_decision(ROLLING) == "r2 RollingOut"  # newer than the scaling, 60s ago
    older = {
        **ROLLING,
        "status": {**ROLLING["status"], "history": ROLLING["status"]["history"][:1]},
    }
    assert last_decision(older) == "scaled 2->4"
    assert last_decision(md(history=[{"revision": 3, "state": "RolledBack", "time": "t"}])) == (
        "r3 RolledBack"
    )
    assert last_decision(md()) == "-"
    console = Console(width=100, record=True, color_system=None)
    console.print(render_list([ROLLING], ["10m"], every_namespace=True))
    text = console.export_text()
    assert "NAMESPACE" in text
    assert "1->2" in text
    assert "r1:75 r2:25" in text


def write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def kubeconfig(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "https://k8s.example:6443/"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "ml"}},
            {"name": "b", "context": {"cluster": "c", "user": "u"}},
            {"name": "broken", "context": {"cluster": "gone", "user": "u"}},
        ],
    }


def test_kubeconfig_contexts_namespaces_and_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    first = write(tmp_path / "one", kubeconfig({"tokenFile": str(token_file)}))
    # A second file joined in KUBECONFIG: the first file's entries win.
    second = write(tmp_path / "two", {**kubeconfig({"token": "ignored"}), "current-context": "b"})
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    target = load_target()
    assert (target.context, target.namespace) == ("a", "ml")
    assert target.credentials.server == "https://k8s.example:6443"
    assert target.credentials.headers["Authorization"] == "Bearer from-file"
    assert load_target("b").namespace == "default"
    assert load_target("b", "other").namespace == "other"
    assert load_target("a", "other").namespace == "other", "-n wins over the context's"
    with pytest.raises(KubeconfigError, match="names cluster 'gone', not defined"):
        load_target("broken")
    with pytest.raises(KubeconfigError, match="context 'zz' is not in the kubeconfig"):
        load_target("zz")
    assert load_target(kubeconfig=str(second)).context == "b", "--kubeconfig replaces the env"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(KubeconfigError, match="no kubeconfig at"):
        load_target()


def test_kubeconfig_exec_credential_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = tmp_path / "get-token.py"
    plugin.write_text(
        "import json, os\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "server = info['spec']['cluster']['server']\n"
        "print(json.dumps({'status': {'token': os.environ['PREFIX'] + server}}))\n"
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "env": [{"name": "PREFIX", "value": "tok-"}],
        }
    }
    monkeypatch.setenv("KUBECONFIG", str(write(tmp_path / "config", kubeconfig(user))))
    headers = load_target().credentials.headers
    assert headers["Authorization"] == "Bearer tok-https://k8s.example:6443/"
    failing = {"exec": {"command": sys.executable, "args": ["-c", "import sys; sys.exit(3)"]}}
    monkeypatch.setenv("KUBECONFIG", str(write(tmp_path / "bad", kubeconfig(failing))))
    with pytest.raises(KubeconfigError, match="exec credential plugin"):
        load_target()


def test_needs_name_each_command() -> None:
    from modelops_cli.plugin_rbac import describe_needs

    assert describe_needs("abort") == (
        "get modelops.dev/modeldeployments in ns; "
        "patch modelops.dev/modeldeployments in ns (metadata.annotations only); "
        "list apps/deployments in ns"
    )
    assert "get pods/log in ns, release" in describe_needs("logs")
    assert describe_needs("list") == "list modelops.dev/modeldeployments in ns (-A: cluster-wide)"


class Statuses:
    """A client whose ModelDeployment's status goes through the given states, one per read."""

    def __init__(self, *statuses: dict[str, Any]) -> None:
        self.statuses = list(statuses)
        self.reads = 0

    async def get(self, *_: Any) -> dict[str, Any]:
        self.reads += 1
        return {"status": self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]}


SETTLED = {"phase": "Ready", "revision": {"current": 1}}
MOVING = {"phase": "RollingOut", "revision": {"current": 1, "candidate": 2}}


@pytest.mark.parametrize(
    ("verb", "states", "code", "reads"),
    [
        # The status as written is settled already: wait for the operator's change first.
        (Verb.ROLLBACK_TO, [SETTLED, SETTLED, MOVING, {"phase": "RolledBack"}], 0, 4),
        (Verb.PROMOTE, [MOVING, {"phase": "Ready", "revision": {"current": 2}}], 0, 2),
        (Verb.PROMOTE, [MOVING, {"phase": "RolledBack", "revision": {"current": 1}}], 1, 2),
        (Verb.ABORT, [MOVING, {"phase": "RolledBack", "revision": {"current": 1}}], 0, 2),
        (Verb.RETRY, [{"phase": "RolledBack"}, MOVING, {"phase": "Failed"}], 1, 3),
    ],
)
async def test_wait_follows_until_settled(
    verb: Verb, states: list[dict[str, Any]], code: int, reads: int
) -> None:
    client: Any = Statuses(*states)
    console = Console(record=True, width=200)
    written = {"status": states[0]}
    found = await follow(client, "ml", "m", written, verb, console, 5.0, interval=0)
    assert (found, client.reads) == (code, reads)


async def test_wait_gives_up_after_its_timeout() -> None:
    console = Console(record=True, width=200)
    found = await follow(
        Statuses(MOVING),
        "ml",
        "m",
        {"status": MOVING},
        Verb.PROMOTE,
        console,
        0.05,
        interval=0.01,
    )  # type: ignore[arg-type]
    assert found == 1
    assert "did not settle within 0s" in console.export_text()


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "m", "-w", "-n", "ml"],
        ["list", "-A"],
        ["logs", "m", "--build"],
        ["promote", "m", "--wait"],
        ["abort", "m"],
        ["retry", "m", "--wait", "--timeout", "30"],
        ["pause", "m"],
        ["resume", "m"],
        ["rollback-to", "m", "2", "--context", "prod"],
        ["set-weight", "m", "40"],
    ],
)
def test_modelops_and_the_plugin_take_the_same_verbs(argv: list[str]) -> None:
    from modelops_cli.main import build_parser as modelops_parser
    from modelops_cli.plugin import build_parser as plugin_parser

    ours, theirs = modelops_parser().parse_args(argv), plugin_parser().parse_args(argv)
    assert vars(ours) == vars(theirs)
    assert ours.plugin is not None
