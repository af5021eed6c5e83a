"""The builder's TensorRT against the one the serving Triton runs, and the keys both sides compute.

The operator names an engine by desired_key (Settings.tensorrt_version, from the chart) and the
builder by compute_key (tensorrt.__version__ of its image): with the full version on both sides
they are the same key, so a hand build and an operator build share a store entry, and the Job
tells the builder which TensorRT it must have.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelops_builder.engines import plan_engine
from modelops_builder.errors import BuildError
from modelops_builder.pipeline import compute_key
from modelops_builder.tensorrt_versions import EXPECTED_VERSION_ENV, check_alignment
from modelops_contract.request import BuildRequest
from modelops_operator.api import ModelDeployment
from modelops_operator.decide.build import desired_key
from modelops_operator.render.build_request import build_request
from modelops_operator.render.job import render_build_job
from modelops_operator.settings import Settings
from tests.support.tensorrt_support import install_gpu_node

REPO = Path(__file__).resolve().parents[2]
FAKE_VERSION = "11.4.0.106"


@pytest.fixture(autouse=True)
def gpu_node(monkeypatch: pytest.MonkeyPatch) -> None:
    install_gpu_node(monkeypatch)


def _tensorrt_deployment() -> ModelDeployment:
    body = yaml.safe_load((REPO / "examples" / "torchscript-gpu.yaml").read_text())
    body["metadata"].update(namespace="ml", uid="u-1", generation=1, resourceVersion="1")
    md = ModelDeployment.from_body(body)
    assert str(md.spec.build.engine) == "tensorrt"
    return md


def _request(**fields: object) -> BuildRequest:
    wire = {"sourceUri": "m.onnx", "sha256": "a" * 64, "store": "s", "engine": "tensorrt"}
    return BuildRequest.model_validate(wire | fields)


def test_a_builder_with_another_tensorrt_refuses_to_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXPECTED_VERSION_ENV, "11.3.0.19")
    for fallback in (False, True):  # no node would do better: fallback does not apply
        with pytest.raises(BuildError) as caught:
            plan_engine(_request(allowFallback=fallback))
        error = caught.value
        assert (error.reason, error.kind) == ("TensorRTVersionMismatch", "infrastructure")
        assert "TensorRT 11.4.0.106" in error.message
        assert "11.3.0.19" in error.message


def test_the_expected_tensorrt_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXPECTED_VERSION_ENV, FAKE_VERSION)
    plan = plan_engine(_request())
    assert (plan.engine, plan.tensorrt_version) == ("tensorrt", FAKE_VERSION)


def test_no_expectation_builds_with_what_the_image_has() -> None:
    """A person building by hand; the key then holds the image's full version."""
    assert plan_engine(_request()).tensorrt_version == FAKE_VERSION
    check_alignment("11.4.0.106", None)


def test_operator_and_builder_compute_the_same_key(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(store_pvc="engines", tensorrt_version=FAKE_VERSION)
    md = _tensorrt_deployment()
    key = desired_key(md.spec, settings)
    request = build_request(md.spec, settings, engine_key=None)
    job = render_build_job(md, key, settings)
    build = next(
        c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "build"
    )
    env = {item["name"]: item.get("value") for item in build["env"]}
    assert env[EXPECTED_VERSION_ENV] == FAKE_VERSION
    monkeypatch.setenv(EXPECTED_VERSION_ENV, env[EXPECTED_VERSION_ENV])
    assert compute_key(request, plan_engine(request)) == key


def test_a_short_version_in_the_operator_is_refused() -> None:
    """ "11.4" keyed every 11.4.x plan alike, and never matched what the builder computed."""
    with pytest.raises(ValueError, match="pattern"):
        Settings(store_pvc="engines", tensorrt_version="11.4")


def test_onnxruntime_jobs_carry_no_tensorrt_expectation() -> None:
    body = yaml.safe_load((REPO / "examples" / "minimal-onnx.yaml").read_text())
    body["metadata"].update(namespace="ml", uid="u-2", generation=1, resourceVersion="1")
    md = ModelDeployment.from_body(body)
    settings = Settings(store_pvc="engines")
    job = render_build_job(md, desired_key(md.spec, settings), settings)
    spec = job["spec"]["template"]["spec"]
    for container in [*spec["initContainers"], *spec["containers"]]:
        assert EXPECTED_VERSION_ENV not in {item["name"] for item in container["env"]}
