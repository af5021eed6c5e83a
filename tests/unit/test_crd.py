"""The committed CRD: current with the models, structural, bounded, and wired for kubectl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from jsonschema import Draft202012Validator

from modelops_cli import generated
from modelops_cli import main as cli
from modelops_operator.api import crd as crd_module
from modelops_operator.api import spec as spec_module
from modelops_operator.api.apidoc import render_api_doc
from tests.support.crd import CRD_PATH, compile_rule, openapi_schema, to_jsonschema

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "$ref",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "title",
    "const",
    "patternProperties",
    "propertyNames",
    "examples",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
}
# Set by the API server itself; bounds there would only duplicate its own checks.
ROOT_EXEMPT = {"<root>.apiVersion", "<root>.kind", "<root>.metadata"}


def nodes(node: dict[str, Any], path: str = "<root>") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def schema_at(json_path: str) -> dict[str, Any]:
    """The schema node a `.a.b` path (as in printer columns or scale paths) points at."""
    node = openapi_schema()
    for part in json_path.strip(".").split("."):
        node = node["properties"][part]
    return node


ALL_NODES = list(nodes(openapi_schema()))


def test_committed_crd_is_current() -> None:
    assert CRD_PATH.read_text() == generated.render_crd_yaml(), "run `.venv/bin/modelops crd`"


def test_drift_is_detected_when_a_model_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    committed = generated.render_crd_yaml()
    changed = pydantic.create_model(
        "ModelDeploymentSpec",
        __base__=spec_module.ModelDeploymentSpec,
        priority_class=(str | None, pydantic.Field(default=None, max_length=253)),
    )
    monkeypatch.setattr(crd_module, "ModelDeploymentSpec", changed)
    drifted = generated.render_crd_yaml()
    assert drifted != committed
    assert "priorityClass:" in drifted
    stale = tmp_path / "crd.yaml"
    stale.write_text(committed)
    assert cli.main(["crd", "--check", "-o", str(stale)]) == 1
    assert stale in generated.stale_files(generated.generated_files(stale))
    stale.write_text(drifted)
    assert stale not in generated.stale_files(generated.generated_files(stale))


def test_drift_is_detected_when_a_bound_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    committed = generated.render_crd_yaml()
    uri = (str, pydantic.Field(max_length=4096, pattern=spec_module.URI_PATTERN))
    source = pydantic.create_model("Source", __base__=spec_module.Source, uri=uri)
    model = pydantic.create_model("ModelSpec", __base__=spec_module.ModelSpec, source=(source, ...))
    spec = pydantic.create_model(
        "ModelDeploymentSpec", __base__=spec_module.ModelDeploymentSpec, model=(model, ...)
    )
    monkeypatch.setattr(crd_module, "ModelDeploymentSpec", spec)
    drifted = generated.render_crd_yaml()
    assert drifted != committed
    assert "maxLength: 4096" in drifted
    assert "maxLength: 2048" in committed


def test_every_generated_file_is_current() -> None:
    files = generated.generated_files(root=ROOT)
    assert generated.stale_files(files) == [], "run `.venv/bin/modelops crd`"
    assert {f.path.relative_to(ROOT).as_posix() for f in files} == {
        "crds/modeldeployments.modelops.dev.yaml",
        "charts/modelops/templates/crd.yaml",
        "docs/api.md",
    }


def test_api_doc_is_current() -> None:
    expected = render_api_doc()
    assert (ROOT / "docs" / "api.md").read_text() == expected, "run `.venv/bin/modelops crd`"
    for message in (
        r["message"] for _, n in ALL_NODES for r in n.get("x-kubernetes-validations", [])
    ):
        assert message in expected


@pytest.mark.parametrize(("path", "node"), ALL_NODES, ids=[p for p, _ in ALL_NODES])
def test_every_node_is_structural_and_bounded(path: str, node: dict[str, Any]) -> None:
    assert not FORBIDDEN & node.keys(), f"{path}: {FORBIDDEN & node.keys()}"
    assert node.get("additionalProperties") is not False, path
    assert not ("properties" in node and "additionalProperties" in node), path
    if node.get("x-kubernetes-int-or-string"):
        assert "type" not in node, f"{path}: int-or-string has no type"
        assert "maxLength" in node, f"{path}: unbounded string form"
        return
    kind = node.get("type")
    assert kind in {"object", "array", "string", "integer", "number", "boolean"}, path
    if path in ROOT_EXEMPT:
        return
    if kind == "string":
        assert "maxLength" in node, f"{path}: string without maxLength"
    if kind == "array":
        assert "maxItems" in node, f"{path}: list without maxItems"
    if kind == "object":
        assert "properties" in node or "maxProperties" in node, f"{path}: map without bound"
    for flag in ("exclusiveMinimum", "exclusiveMaximum"):
        assert node.get(flag, True) is True, f"{path}: {flag} must be a boolean in OpenAPI v3.0"


def test_metadata_only_at_root_and_only_typed() -> None:
    schema = openapi_schema()
    assert schema["type"] == "object"
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert [p for p, _ in ALL_NODES if p.endswith(".metadata")] == ["<root>.metadata"]
    assert schema["required"] == ["spec"]


def test_defaults_are_valid_for_their_node() -> None:
    seen = 0
    for path, node in ALL_NODES:
        if "default" in node:
            seen += 1
            errors = list(Draft202012Validator(to_jsonschema(node)).iter_errors(node["default"]))
            assert not errors, f"{path}: {errors}"
    assert seen >= 15


def test_every_cel_rule_compiles_and_points_at_a_field() -> None:
    rules = [(p, n, r) for p, n in ALL_NODES for r in n.get("x-kubernetes-validations", [])]
    assert len(rules) >= 16
    for path, node, rule in rules:
        compile_rule(rule["rule"])
        assert rule["message"].startswith("spec."), rule
        target = node
        for part in rule.get("fieldPath", "").strip(".").split("."):
            if part:
                target = target["properties"][part]  # KeyError: fieldPath names no field
        assert "\\" not in rule["rule"], f"{path}: CEL string escapes differ from regex ones"


def test_subresources_point_at_the_right_fields() -> None:
    version = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    scale = version["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.serving.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert schema_at(scale["specReplicasPath"])["type"] == "integer"
    assert schema_at(scale["statusReplicasPath"])["type"] == "integer"
    assert schema_at(scale["labelSelectorPath"])["type"] == "string"


def test_printer_columns() -> None:
    version = yaml.safe_load(CRD_PATH.read_text())["spec"]["versions"][0]
    columns = version["additionalPrinterColumns"]
    assert [c["name"].upper() for c in columns] == [
        "MODEL",
        "ENGINE",
        "REVISION",
        "PHASE",
        "READY",
        "QPS",
        "AGE",
    ]
    for column in columns:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
            continue
        assert schema_at(column["jsonPath"])["type"] == column["type"], column


def test_names_scope_and_versions() -> None:
    crd = yaml.safe_load(CRD_PATH.read_text())
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "modeldeployments.modelops.dev"
    spec = crd["spec"]
    assert spec["group"] == "modelops.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "ModelDeployment",
        "listKind": "ModelDeploymentList",
        "plural": "modeldeployments",
        "singular": "modeldeployment",
        "shortNames": ["md"],
        "categories": ["modelops"],
    }
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [
        ("v1alpha1", True, True)
    ]


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    conditions = schema_at(".status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]
