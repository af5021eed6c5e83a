"""Every container the chart and the operator give the project's images, read from what they
render (never a hand-written list): the chart with `helm template` (default values and every
ci/*.yaml), the operator's pod renderers with the Settings the chart's operator env configures.

Images are told apart by reference: the chart is rendered with the operator and builder images
under a test registry (IMAGE_REPOSITORIES), and the operator passes those references on to the
Jobs and Deployments it renders (the router agent runs the operator image).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from modelops_contract.manifest import EngineManifest
from modelops_operator.api import ModelDeployment
from modelops_operator.render.job import render_build_job
from modelops_operator.render.revision import render_deployment
from modelops_operator.render.router import render_router_deployment
from modelops_operator.render.source_job import render_source_job
from modelops_operator.render.validation_job import render_validation_job
from modelops_operator.settings import Settings
from tests.support.chart import CI_VALUES, Helm, Manifest, env_of, operator_container

REPO = Path(__file__).resolve().parents[2]
RENDER = REPO / "operator" / "modelops_operator" / "render"
IMAGE_REPOSITORIES = {"operator": "images.test/operator", "builder": "images.test/builder"}
KEY = "sha256:" + "ab" * 32
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# file:// examples are for `modelops dev`: the operator refuses them (spec.model.source.uri).
EXAMPLES = ("minimal-onnx.yaml", "torchscript-gpu.yaml", "canary-autoscaling.yaml")


@dataclass(frozen=True)
class Container:
    """One container of one rendered pod: where it comes from and what the kubelet runs."""

    where: str
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    env: dict[str, str]
    mounts: tuple[str, ...]

    def argv(self, entrypoint: list[str], cmd: list[str]) -> list[str]:
        """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD."""
        if self.command is not None:
            return [*self.command, *(self.args or ())]
        return [*entrypoint, *(self.args if self.args is not None else cmd)]


def _pod_specs(manifest: Manifest) -> Iterator[dict[str, Any]]:
    spec = manifest.get("spec") or {}
    if manifest["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template")
    if template:
        yield template["spec"]
    elif manifest["kind"] == "Pod":
        yield spec


def containers_of(manifests: list[Manifest], origin: str) -> list[Container]:
    """The containers (init ones included) of every pod template in `manifests`."""
    found = []
    for manifest in manifests:
        for pod in _pod_specs(manifest):
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                command, args = container.get("command"), container.get("args")
                found.append(
                    Container(
                        where=f"{origin} {manifest['kind']}/{manifest['metadata']['name']} "
                        f"container {container['name']}",
                        image=container["image"],
                        command=tuple(command) if command is not None else None,
                        args=tuple(str(a) for a in args) if args is not None else None,
                        env=env_of(container, manifest["metadata"].get("namespace") or "ml"),
                        mounts=tuple(m["mountPath"] for m in container.get("volumeMounts", [])),
                    )
                )
    return found


def chart_values() -> dict[str, Any]:
    """Values that put the project's images under the test registry (tags stay the chart's)."""
    return {"images": {n: {"repository": r} for n, r in IMAGE_REPOSITORIES.items()}}


def chart_renders(helm: Helm) -> list[tuple[str, list[Manifest]]]:
    """(case, manifests) of `helm template` with the default values and each ci/*.yaml."""
    cases = [("chart default", [])] + [(f"chart {p.stem}", [p]) for p in CI_VALUES]
    return [(name, helm.template(files, chart_values())) for name, files in cases]


def settings_from_chart(manifests: list[Manifest]) -> Settings:
    """The Settings the chart's operator pod starts with (its MODELOPS_* env)."""
    env = env_of(operator_container(manifests))
    fields: dict[str, Any] = {
        name.removeprefix("MODELOPS_").lower(): value
        for name, value in env.items()
        if name.startswith("MODELOPS_")
    }
    fields["namespaces"] = [n for n in str(fields.get("namespaces", "")).split(",") if n]
    if "default_triton_resources" in fields:
        fields["default_triton_resources"] = yaml.safe_load(fields["default_triton_resources"])
    return Settings(**fields)


def _engine(md: ModelDeployment) -> EngineManifest:
    tensorrt = str(md.spec.build.engine) == "tensorrt"
    return EngineManifest(
        key=KEY,
        engine=str(md.spec.build.engine),
        precision=str(md.spec.build.precision),
        serving_backend="tensorrt_plan" if tensorrt else "onnxruntime",
        model_name="model",
        model_file="model.plan" if tensorrt else "model.onnx",
        gpu_product=md.spec.build.gpu.product if tensorrt and md.spec.build.gpu else None,
        inputs=[{"name": "input", "data_type": "FP32", "dims": [16]}],
        outputs=[{"name": "logits", "data_type": "FP32", "dims": [4]}],
        max_batch_size=8,
        opt_batch_size=4,
        source_sha256="cd" * 32,
        format="onnx",
        created_at="2025-01-01T00:00:00Z",
    )


def example_models() -> list[ModelDeployment]:
    """The examples the operator accepts, as the API server would hand them over."""
    found = []
    for example in EXAMPLES:
        body = yaml.safe_load((REPO / "examples" / example).read_text())
        body["metadata"].update(namespace="ml", uid="0f6c5a5e-1111-2222-3333-444455556666")
        body["metadata"].setdefault("generation", 1)
        body["metadata"].setdefault("resourceVersion", "1")
        found.append(ModelDeployment.from_body(body))
    return found


# Every pod renderer of the operator, by name: tests/images checks that this is all of them.
POD_RENDERERS: dict[str, Callable[[ModelDeployment, Settings], Manifest]] = {
    "render_build_job": lambda md, s: render_build_job(md, KEY, s),
    "render_source_job": lambda md, s: render_source_job(md, KEY, s, keep=True, now=NOW),
    "render_deployment": lambda md, s: render_deployment(md, 2, _engine(md), s),
    "render_router_deployment": render_router_deployment,
    "render_validation_job": lambda md, s: render_validation_job(
        md, 2, _engine(md), ["10.0.0.1:8001"], s
    ),
}


def operator_workloads(settings: Settings) -> list[Manifest]:
    """Every pod-bearing object the operator renders for the examples with `settings`."""
    return [render(md, settings) for md in example_models() for render in POD_RENDERERS.values()]


def pod_renderers_in_source() -> set[str]:
    """Functions of modelops_operator.render that build a pod spec (a `containers` key)."""
    found = set()
    for path in RENDER.glob("*.py"):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                keys = node.keys if isinstance(node, ast.Dict) else []
                if any(isinstance(k, ast.Constant) and k.value == "containers" for k in keys):
                    found.add(function.name)
    return found


def image_containers(helm: Helm) -> dict[str, list[Container]]:
    """image name -> every container the chart and the operator give it; other images (Triton,
    HAProxy) are left out."""
    every: list[Container] = []
    for case, manifests in chart_renders(helm):
        every += containers_of(manifests, case)
        every += containers_of(operator_workloads(settings_from_chart(manifests)), f"{case} ->")
    by_image: dict[str, list[Container]] = {name: [] for name in IMAGE_REPOSITORIES}
    for container in every:
        for name, repository in IMAGE_REPOSITORIES.items():
            if container.image.startswith(f"{repository}:"):
                by_image[name].append(container)
    return by_image
