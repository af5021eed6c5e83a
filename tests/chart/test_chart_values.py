"""values.schema.json: strict, documented, and rejecting bad values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from tests.support.chart import (
    CHART,
    CI_VALUES,
    FULLNAME,
    Helm,
    find,
    load_values,
    one,
)

# --- values.schema.json ------------------------------------------------------------------------
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())


def _schema_objects(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _schema_objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schema_objects(value, f"{path}[{index}]")


def test_values_schema_is_strict() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    objects = list(_schema_objects(SCHEMA))
    assert len(objects) > 30
    for path, node in objects:
        if path in ("$.properties.global", "$.definitions", "$.properties"):
            continue
        if ".properties.properties" in path or path.endswith((".definitions", ".properties")):
            continue
        if node.get("type") != "object":  # a "properties" map seen as a node, or an if/then
            continue
        assert "additionalProperties" in node, f"{path} accepts unknown keys"
        if "properties" in node:
            assert node["additionalProperties"] is False, path


def test_default_values_pass_the_schema() -> None:
    values = load_values([])
    jsonschema.Draft7Validator(SCHEMA).validate(values)
    for path in CI_VALUES:
        jsonschema.Draft7Validator(SCHEMA).validate(load_values([path]))


# Definitions that are Kubernetes types (resources, affinity, ...), documented upstream; `image`
# is the chart's own.
OWN_DEFINITIONS = {"image"}


def _schema_property_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the chart's own keys (properties, into the chart's own definitions)."""
    target = node.get("$ref") or next(
        (sub["$ref"] for sub in node.get("allOf", []) if "$ref" in sub), None
    )
    if target and target.rsplit("/", 1)[-1] not in OWN_DEFINITIONS:
        return
    node = _deref(node)
    for name, sub in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        yield path
        yield from _schema_property_paths(sub, path + ".")


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _deref(SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]])
    if "allOf" in node and len(node["allOf"]) == 1:
        return _deref(node["allOf"][0])
    return node


def _values_key_lines() -> Iterator[tuple[str, int]]:
    """(dotted key path, line index) of every mapping key line of values.yaml."""
    stack: list[tuple[int, str]] = []
    for index, line in enumerate((CHART / "values.yaml").read_text().splitlines()):
        match = re.match(r"^( *)([A-Za-z][\w.-]*|\"[^\"]+\"):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        yield ".".join(key for _, key in stack), index


def test_values_yaml_documents_every_key() -> None:
    """values.yaml holds every key of the schema (but `global`), each under a comment."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    schema_paths = set(_schema_property_paths(SCHEMA)) - {"global"}
    seen = set()
    for path, index in _values_key_lines():
        if path not in schema_paths:
            continue  # data inside a typed map, e.g. resources.requests.cpu
        seen.add(path)
        previous = next(lines[i] for i in range(index - 1, -1, -1) if lines[i].strip())
        assert previous.strip().startswith("#"), f"values.yaml: {path} has no comment above it"
    assert seen == schema_paths, f"in the schema, not in values.yaml: {schema_paths - seen}"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"replicaCount": 2}, "replicaCount"),
        ({"replicas": -1}, "replicas"),
        ({"operator": {"logLevel": "debug"}}, "logLevel"),
        ({"clusterWide": "yes"}, "clusterWide"),
        ({"images": {"operator": {"tag": 1.2}}}, "tag"),
        ({"images": {"triton": {"tag": "25.10 py3"}}}, "tag"),
        ({"images": {"builder": {"digest": "sha256:abc"}}}, "digest"),
        ({"images": {"operator": {"registry": "ghcr.io"}}}, "registry"),
        ({"images": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watchNamespaces": ["Bad_NS"]}, "watchNamespaces"),
        ({"clusterWide": True, "watchNamespaces": ["ml"]}, "watchNamespaces"),
        ({"operator": {"metricsPort": "8080"}}, "metricsPort"),
        ({"operator": {"resources": {"limit": {"cpu": "1"}}}}, "limit"),
        ({"operator": {"resources": {"limits": {"memory": "lots"}}}}, "memory"),
        ({"store": {"pvc": {"size": 100}}}, "size"),
        ({"store": {"pvc": {"accessModes": ["RWX"]}}}, "accessModes"),
        ({"store": {"s3": {"uri": "https://bucket/prefix"}}}, "uri"),
        ({"build": {"backoffLimit": 11}}, "backoffLimit"),
        ({"triton": {"onnxServingBackend": "tensorrt"}}, "onnxServingBackend"),
        ({"crds": {"keep": "true"}}, "keep"),
        ({"rbac": {"create": True, "extraRules": []}}, "extraRules"),
        (
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "enabled",
        ),
        ({"networkPolicy": {"extraEgress": [{"to": [], "port": 443}]}}, "port"),
        ({"operator": {"tolerations": [{"key": "a", "operator": "Maybe"}]}}, "operator"),
    ],
    ids=lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else None,
)
def test_schema_rejects_bad_values(helm: Helm, values: dict[str, Any], expected: str) -> None:
    error = helm.template_error(values=values)
    assert "values don't meet the specifications of the schema" in error, error
    assert expected in error, error


def test_existing_service_account_needs_a_name(helm: Helm) -> None:
    error = helm.template_error(values={"serviceAccount": {"create": False}})
    assert "serviceAccount.name is required" in error
    manifests = helm.template(values={"serviceAccount": {"create": False, "name": "mine"}})
    assert find(manifests, "ServiceAccount") == []
    deployment = one(manifests, "Deployment", FULLNAME)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


def test_replicas_zero_pauses_the_operator(helm: Helm) -> None:
    manifests = helm.template(values={"replicas": 0})
    assert one(manifests, "Deployment", FULLNAME)["spec"]["replicas"] == 0
    assert find(manifests, "PodDisruptionBudget") == [], "no budget for a paused operator"


def test_one_replica_gets_no_budget_and_election_can_be_off(helm: Helm) -> None:
    off = {"enabled": False, "leaseDurationSeconds": 8, "renewDeadlineSeconds": 5}
    off["retryPeriodSeconds"] = 2
    manifests = helm.template(values={"replicas": 1, "operator": {"leaderElection": off}})
    assert find(manifests, "PodDisruptionBudget") == []
    assert not [m for m in find(manifests, "Role") if "leader" in m["metadata"]["name"]]
