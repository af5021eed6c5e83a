"""Generate the CustomResourceDefinition from the pydantic models: structural OpenAPI v3 schema."""

from __future__ import annotations

from typing import Any

from .base import GROUP, KIND, PLURAL, SINGULAR, VERSION
from .spec import ModelDeploymentSpec
from .status import ModelDeploymentStatus

# Keys pydantic emits that the Kubernetes structural schema does not accept.
_DROP = {"title", "$defs", "examples"}
_STRING_KEYS = ("pattern", "maxLength", "minLength")
_INTEGER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.source.uri", "priority": 0},
    {"name": "Engine", "type": "string", "jsonPath": ".spec.build.engine"},
    {"name": "Revision", "type": "integer", "jsonPath": ".status.revision.current"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
    {"name": "QPS", "type": "number", "jsonPath": ".status.metrics.inferencesPerSecond"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s and collapse pydantic's optional/int-or-string unions into structural form."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        types = {v.get("type") for v in variants}
        if len(variants) == 1:
            return _resolve({**variants[0], **rest}, defs)
        if types == {"integer", "string"}:
            # Value validations apply by the value's type: pattern/maxLength to the string form,
            # minimum/maximum to the integer form. A structural int-or-string node has no `type`.
            out: dict[str, Any] = {"x-kubernetes-int-or-string": True, **rest}
            for variant in variants:
                keep = _STRING_KEYS if variant.get("type") == "string" else _INTEGER_KEYS
                out.update({k: v for k, v in variant.items() if k in keep})
            return _resolve(out, defs)
        raise ValueError(f"cannot express union {node['anyOf']} in a structural schema")
    if "patternProperties" in node:
        # Kubernetes has no patternProperties: the map's values keep their schema, the key pattern
        # is checked by the pydantic model only (docs/api.md says so).
        (values,) = node["patternProperties"].values()
        rest = {k: v for k, v in node.items() if k != "patternProperties"}
        return _resolve({**rest, "additionalProperties": values}, defs)
    out = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default" and value is None:
            continue
        if key == "properties":
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        elif key == "additionalProperties" and value is False:
            # Structural schemas prune unknown fields; strict field validation rejects them.
            continue
        elif key == "propertyNames":
            out["x-modelops-property-names"] = value
        else:
            out[key] = _resolve(value, defs)
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = {"type": "string"}
    return out


def _finalise(node: Any) -> Any:
    """Drop helper markers and move `const`/defaults of composite type into Kubernetes form."""
    if isinstance(node, list):
        return [_finalise(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _finalise(v) for k, v in node.items() if k != "x-modelops-property-names"}
    if node.get("type") == "object" and "properties" in node:
        # Object-valued defaults are left to pydantic; the API server applies scalar and list ones.
        node.pop("default", None)
    if node.get("type") == "string" and "enum" in node and "maxLength" not in node:
        # Bounded for the CEL cost estimator, which reads maxLength, not enum.
        node["maxLength"] = max(len(str(v)) for v in node["enum"])
    # OpenAPI v3.0 (Kubernetes) spells exclusive bounds as a boolean beside minimum/maximum.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(exclusive)
        if isinstance(value, int | float) and not isinstance(value, bool):
            node[bound] = value
            node[exclusive] = True
    if "maxItems" in node and node.get("type") != "array":
        node.pop("maxItems")
    return node


def model_schema(model: type[Any]) -> dict[str, Any]:
    """The structural schema of one pydantic model, camelCase, refs inlined."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _finalise(_resolve(raw, defs))
    assert isinstance(schema, dict)
    return schema


def build_crd() -> dict[str, Any]:
    """The full apiextensions.k8s.io/v1 CustomResourceDefinition for ModelDeployment."""
    spec_schema = model_schema(ModelDeploymentSpec)
    status_schema = model_schema(ModelDeploymentStatus)
    spec_schema["description"] = "Desired state; the operator never writes it."
    status_schema["description"] = "Observed state, written by the operator."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "modelops"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": ["md"],
                "categories": ["modelops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.serving.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A model served by Triton, built and rolled out by "
                            "modelops.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }
