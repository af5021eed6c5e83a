"""Every examples/*.yaml: accepted by the CRD (schema + defaults + CEL) and by the operator, or,
for the `modelops dev` examples (file:// sources), refused by the CRD for that reason alone and
accepted by the dev loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_cli.dev import load_deployment
from modelops_operator.api import ModelDeployment, ModelDeploymentSpec, rules
from tests.support.crd import admit

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
OURS = {"minimal-onnx.yaml", "canary-autoscaling.yaml", "torchscript-gpu.yaml"}


def deployments(path: Path) -> list[dict[str, Any]]:
    """The ModelDeployment documents of one (possibly multi-document) file."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return [d for d in docs if d.get("kind") == "ModelDeployment"]


def test_our_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= OURS


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_accepted_by_api_server_and_operator(path: Path) -> None:
    assert path.read_text().startswith("#"), "start with a comment saying what it shows"
    found = deployments(path)
    assert found, "no ModelDeployment in the file"
    for doc in found:
        assert doc["apiVersion"] == "modelops.dev/v1alpha1"
        stored, errors = admit(doc)
        if doc["spec"]["model"]["source"]["uri"].startswith("file://"):
            assert errors == [f"spec.model.source.uri: {rules.MSG_FILE_URI}"]
            assert "modelops dev" in path.read_text().split("apiVersion")[0]
            load_deployment(path)  # the dev loop's validation accepts it
            continue
        assert errors == [], errors
        ModelDeploymentSpec.model_validate(doc["spec"])
        ModelDeployment.from_body(stored)


def test_canary_autoscaling_shows_what_it_says() -> None:
    (doc,) = deployments(EXAMPLES[0].parent / "canary-autoscaling.yaml")
    spec = ModelDeploymentSpec.model_validate(doc["spec"])
    assert (spec.build.engine, spec.build.precision) == ("tensorrt", "fp16")
    assert spec.build.gpu is not None
    assert spec.build.gpu.product == "NVIDIA-H100-80GB-HBM3"
    assert spec.rollout.canary.steps == [10, 50, 100]
    assert spec.scaling is not None
    assert spec.scaling.metric == "queueTime"
    assert spec.serving.resources is not None
    assert spec.serving.resources.limits is not None
    assert spec.serving.resources.limits["nvidia.com/gpu"] == 1


def test_minimal_example_uses_defaults() -> None:
    (doc,) = deployments(EXAMPLES[0].parent / "minimal-onnx.yaml")
    assert set(doc["spec"]) == {"model"}
    assert doc["spec"]["model"]["source"]["uri"].startswith("https://")
