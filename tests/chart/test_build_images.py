"""hack/build-images.sh and .github/workflows/release.yaml: the same images, from the same
Dockerfiles, with the same build args and tags; the printed --set flags point the real chart at
what was pushed.

There is no Docker engine here: the script runs against a `docker` on PATH that records its
arguments and answers `image inspect` with a digest (the real script, the real chart, the real
helm; only the engine is not). The workflow's own plan step runs in bash as GitHub would run it.
actionlint (the dev venv's) checks the workflow file itself.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import REPO, Helm, load_values, one

SCRIPT = REPO / "hack" / "build-images.sh"
WORKFLOW = REPO / ".github" / "workflows" / "release.yaml"
APP_VERSION = yaml.safe_load((REPO / "charts" / "modelops" / "Chart.yaml").read_text())[
    "appVersion"
]
VALUES = load_values([])
NGC = VALUES["images"]["triton"]["tag"].split("-")[0]
DIGEST = "sha256:" + "5" * 64
FAKE_DOCKER = f"""#!/usr/bin/env bash
echo "$*" >> "$DOCKER_LOG"
if [ "$1 $2" = "image inspect" ]; then echo "${{@: -1}}" | sed 's/:[^:/]*$/@{DIGEST}/'; fi
"""


def plan(registry: str, tag: str | None = None) -> list[list[str]]:
    """`hack/build-images.sh --plan`: per image, name, Dockerfile, reference, build args."""
    args = [str(SCRIPT), "--plan", registry, *([tag] if tag else [])]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


def test_plan_is_the_chart_s_release() -> None:
    """Tag: the chart's appVersion; builder FROM the NGC release of the chart's Triton, with the
    chart's tensorrt.version (the build stops on another)."""
    assert plan("registry.example.com/ml/") == [
        ["operator", "operator/Dockerfile", f"registry.example.com/ml/operator:{APP_VERSION}", ""],
        [
            "builder",
            "builder/Dockerfile",
            f"registry.example.com/ml/builder:{APP_VERSION}-ngc{NGC}",
            f"NGC_RELEASE={NGC} TENSORRT_VERSION={VALUES['tensorrt']['version']}",
        ],
    ]


@pytest.mark.parametrize("args", [[], [""], ["a", "b", "c"]])
def test_usage(args: list[str]) -> None:
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "usage: hack/build-images.sh [--plan] REGISTRY [TAG]" in proc.stderr


def test_builds_pushes_and_prints_flags_the_chart_takes(helm_binary: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_LOG": str(log)}
    proc = subprocess.run(
        [str(SCRIPT), "registry.example.com/ml", "1.2.3"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    operator, builder = (
        "registry.example.com/ml/operator:1.2.3",
        f"registry.example.com/ml/builder:1.2.3-ngc{NGC}",
    )
    trt = VALUES["tensorrt"]["version"]
    assert calls[:4] == [
        f"build -f operator/Dockerfile -t {operator} .",
        f"push {operator}",
        f"build -f builder/Dockerfile --build-arg NGC_RELEASE={NGC} "
        f"--build-arg TENSORRT_VERSION={trt} -t {builder} .",
        f"push {builder}",
    ]
    flags = shlex.split(proc.stdout.split("charts/modelops):", 1)[1].replace("\\\n", " "))
    values = dict(flag.split("=", 1) for flag in flags if flag != "--set")
    manifests = Helm(helm_binary).template(values=_nested(values))
    env_vars = {e["name"]: e.get("value") for e in _operator(manifests)["env"]}
    assert _operator(manifests)["image"] == f"{operator}@{DIGEST}"
    assert env_vars["MODELOPS_BUILDER_IMAGE"] == f"{builder}@{DIGEST}"
    assert env_vars["MODELOPS_AGENT_IMAGE"] == f"{operator}@{DIGEST}"


def _nested(flat: dict[str, str]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _operator(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(manifests, "Deployment", "mo-modelops")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


# --- the release workflow -------------------------------------------------------------------
def _workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def _plan_outputs(tmp_path: Path, event: str, ref_name: str) -> dict[str, str]:
    """Run the workflow's plan step in bash as a runner would; its $GITHUB_OUTPUT."""
    (step,) = [s for s in _workflow()["jobs"]["images"]["steps"] if s.get("id") == "plan"]
    script = step["run"].replace("${{ github.event.pull_request.number }}", "42")
    assert "${{" not in script, script
    output = tmp_path / "output"
    env = {
        **os.environ,
        "GITHUB_EVENT_NAME": event,
        "GITHUB_REF_NAME": ref_name,
        "GITHUB_OUTPUT": str(output),
        "REGISTRY": "ghcr.io/owner",
    }
    checkout = tmp_path / "checkout"  # the runner's checkout: the step writes plan.tsv there
    checkout.mkdir()
    for part in ("hack", "charts"):
        (checkout / part).symlink_to(REPO / part)
    proc = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


def _build_steps(outputs: dict[str, str]) -> dict[str, dict[str, str]]:
    """The docker/build-push-action steps' inputs with the plan's outputs filled in."""
    steps = {}
    for step in _workflow()["jobs"]["images"]["steps"]:
        if str(step.get("uses", "")).startswith("docker/build-push-action@"):
            inputs = {
                key: re.sub(
                    r"\$\{\{ steps\.plan\.outputs\.(\w+) \}\}",
                    lambda m: outputs[m.group(1)],
                    str(value),
                )
                for key, value in step["with"].items()
            }
            steps[inputs["file"]] = inputs
    return steps


@pytest.mark.parametrize(
    ("event", "ref_name", "tag"),
    [("push", f"v{APP_VERSION}", APP_VERSION), ("pull_request", "42/merge", "pr-42")],
)
def test_workflow_builds_what_the_script_builds(
    tmp_path: Path, event: str, ref_name: str, tag: str
) -> None:
    outputs = _plan_outputs(tmp_path, event, ref_name)
    steps = _build_steps(outputs)
    expected = plan("ghcr.io/owner", tag)
    assert sorted(steps) == sorted(dockerfile for _, dockerfile, _, _ in expected)
    for _, dockerfile, ref, args in expected:
        step = steps[dockerfile]
        assert step["context"] == "."
        assert step["tags"] == ref
        assert step.get("build-args", "").split() == args.split()
        assert step["push"] == "${{ env.PUSH == 'true' }}"
    assert _workflow()["env"]["PUSH"] == "${{ github.event_name == 'push' }}"


def test_workflow_refuses_a_tag_that_is_not_the_app_version(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="is not the chart's appVersion"):
        _plan_outputs(tmp_path, "push", "v9.9.9")


def test_workflow_pushes_the_chart_on_tags_only() -> None:
    workflow = _workflow()
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads `on` as True
    assert workflow[True]["push"] == {"tags": ["v*"]}
    chart = workflow["jobs"]["chart"]
    assert chart["if"] == "github.event_name == 'push'"
    assert chart["needs"] == "images"
    script = "\n".join(step.get("run", "") for step in chart["steps"])
    assert "helm package charts/modelops" in script
    assert 'helm push dist/modelops-*.tgz "oci://$REGISTRY/charts"' in script


def test_actionlint_passes() -> None:
    actionlint = Path(sys.executable).parent / "actionlint"
    proc = subprocess.run(
        [str(actionlint), str(WORKFLOW)], capture_output=True, text=True, check=False, cwd=REPO
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    dockerfiles = [str(REPO / "operator" / "Dockerfile"), str(REPO / "builder" / "Dockerfile")]
    proc = subprocess.run(
        [str(hadolint), *dockerfiles], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
