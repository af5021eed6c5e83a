"""The CRD template: the generated CRD, optional, kept on uninstall; examples valid against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.chart import (
    CHART,
    CRD_FILE,
    CRD_NAME,
    KEEP,
    NAMESPACE,
    RELEASE,
    REPO,
    Helm,
    Manifest,
    find,
    one,
)


# --- the CRD -----------------------------------------------------------------------------------
def generated_crd() -> Manifest:
    crd: Manifest = yaml.safe_load(CRD_FILE.read_text())
    return crd


@pytest.mark.parametrize("keep", [True, False])
def test_crd_template_is_the_generated_crd(helm: Helm, keep: bool) -> None:
    manifests = helm.template(values={"crds": {"enabled": True, "keep": keep}})
    crd = one(manifests, "CustomResourceDefinition", CRD_NAME)
    expected = generated_crd()
    if keep:
        expected["metadata"]["annotations"] = {
            **expected["metadata"].get("annotations", {}),
            KEEP: "keep",
        }
    assert crd == expected


def test_crd_can_be_left_out(helm: Helm) -> None:
    manifests = helm.template(values={"crds": {"enabled": False}})
    assert find(manifests, "CustomResourceDefinition") == []


def test_packaged_chart_carries_the_crd(helm: Helm, tmp_path: Path) -> None:
    """The packaged chart renders the generated CRD."""
    result = helm.run("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("modelops-*.tgz")
    result = helm.run("template", RELEASE, str(archive), "--namespace", NAMESPACE)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    crd = one(docs, "CustomResourceDefinition", CRD_NAME)
    assert crd["spec"] == generated_crd()["spec"]


def strict_schema(node: Any, path: str = "") -> Any:
    """A CRD structural schema as JSON Schema, unknown fields rejected the way the API server
    does with strict field validation (`metadata` is the API server's, left open)."""
    if isinstance(node, list):
        return [strict_schema(item, path) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: strict_schema(sub, f"{path}.{name}") for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_schema(value, path + "[]")
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = strict_schema(value, path)
        else:
            out[key] = value
    # OpenAPI v3.0 booleans exclusiveMinimum/Maximum -> JSON Schema numbers.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True:
            out[exclusive] = out.pop(bound)
        elif out.get(exclusive) is False:
            del out[exclusive]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("nullable"):
        out["type"] = [out["type"], "null"] if isinstance(out.get("type"), str) else out["type"]
    if (
        out.get("type") == "object"
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and path != ".metadata"
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validator(helm: Helm) -> jsonschema.Draft202012Validator:
    crd = one(helm.template(), "CustomResourceDefinition", CRD_NAME)
    (version,) = crd["spec"]["versions"]
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_valid_against_the_chart_crd(
    crd_validator: jsonschema.Draft202012Validator, example: Path
) -> None:
    body = yaml.safe_load(example.read_text())
    assert body["apiVersion"] == "modelops.dev/v1alpha1"
    assert body["kind"] == "ModelDeployment"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in crd_validator.iter_errors(body)]
    assert errors == []


@pytest.mark.parametrize(
    ("field", "patch"),
    [
        ("serving.image", {"serving": {"image": "evil.example.com/triton:latest"}}),
        ("serving.serviceAccountName", {"serving": {"serviceAccountName": "cluster-admin"}}),
        ("build.image", {"build": {"image": "evil.example.com/builder:1"}}),
        ("serving.securityContext", {"serving": {"securityContext": {"privileged": True}}}),
        ("spec.podTemplate", {"podTemplate": {"spec": {"hostNetwork": True}}}),
    ],
)
def test_crd_rejects_images_and_service_accounts(
    crd_validator: jsonschema.Draft202012Validator, field: str, patch: dict[str, Any]
) -> None:
    """Nothing in a ModelDeployment chooses an image, an identity or pod privileges: the CRD's
    schema has no such fields, so strict field validation rejects them."""
    body = yaml.safe_load((REPO / "examples" / "cpu-onnxruntime.yaml").read_text())
    assert list(crd_validator.iter_errors(body)) == []
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(body["spec"].get(key), dict):
            body["spec"][key].update(value)
        else:
            body["spec"][key] = value
    messages = [e.message for e in crd_validator.iter_errors(body)]
    assert any("Additional properties are not allowed" in m for m in messages), (field, messages)
