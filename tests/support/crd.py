"""A test-side API server for the committed CRD: strict schema validation, defaulting, then CEL.

kmock does not validate custom resources, so the tests use this to see what a real API server
(>= 1.29, `kubectl apply` with strict field validation) would answer:

(a) the openAPIV3Schema, as JSON Schema 2020-12, with unknown fields rejected everywhere and
    `x-kubernetes-int-or-string` read as "an integer or a string";
(b) the schema's `default`s, applied only where the parent object exists;
(c) every `x-kubernetes-validations` rule, evaluated with cel-python at its node with `self`
    bound to that node's value (typed by the schema: a `number` is always a double).

CEL runs only on an object the schema accepts (the API server reports both kinds of error; a
test needs one). Errors are `path: message`, e.g. `spec.scaling.minReplicas: spec.scaling...`.
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy import celtypes
from jsonschema import Draft202012Validator

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "modeldeployments.modelops.dev.yaml"

Json = Any


@functools.cache
def load_crd() -> dict[str, Json]:
    """The committed CRD document."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    assert isinstance(crd, dict)
    return crd


def openapi_schema() -> dict[str, Json]:
    """The openAPIV3Schema of the (only) version."""
    schema = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def to_jsonschema(node: Json) -> Json:
    """Kubernetes structural schema -> JSON Schema 2020-12 with unknown fields rejected."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Json] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("exclusiveMinimum", "exclusiveMaximum"):
            continue
        if key == "properties":
            out[key] = {name: to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_jsonschema(value)
        else:
            out[key] = value
    # OpenAPI v3.0 booleans -> JSON Schema numbers.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(exclusive) is True:
            out[exclusive] = out.pop(bound)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False  # kubectl --validate=strict: unknown fields rejected
    return out


@functools.cache
def _validator() -> Draft202012Validator:
    schema = to_jsonschema(openapi_schema())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "<root>"


def schema_errors(obj: Json) -> list[str]:
    """Step (a): JSON Schema errors as `path: message`."""
    errors = sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_path(e.absolute_path)}: {e.message}" for e in errors]


def apply_defaults(value: Json, schema: dict[str, Json]) -> None:
    """Step (b), in place: fill `default`s of absent properties of objects that exist."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            for name, sub in props.items():
                if name not in value and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
                if name in value:
                    apply_defaults(value[name], sub)
        elif isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(item, schema["items"])


def to_cel(value: Json, schema: dict[str, Json]) -> Any:
    """A JSON value as the CEL value the API server binds, typed by its schema."""
    kind = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return celtypes.IntType(value) if isinstance(value, int) else celtypes.StringType(value)
    if kind == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(v, props.get(k, {}) if props else extra or {})
                for k, v in value.items()
            }
        )
    if kind == "array":
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if kind == "number":
        return celtypes.DoubleType(float(value))
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "string":
        return celtypes.StringType(value)
    if kind == "boolean":
        return celtypes.BoolType(value)
    return celpy.json_to_cel(value)


# The Kubernetes CEL list/string library functions that cel-python lacks (member-call form:
# `self.steps.isSorted()` calls isSorted(self.steps)).
def _is_sorted(items: Any) -> celtypes.BoolType:
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


def _index_of(target: Any, item: Any) -> celtypes.IntType:
    if isinstance(target, str):
        return celtypes.IntType(target.find(item))
    return celtypes.IntType(next((i for i, x in enumerate(target) if x == item), -1))


def _last_index_of(target: Any, item: Any) -> celtypes.IntType:
    if isinstance(target, str):
        return celtypes.IntType(target.rfind(item))
    hits = [i for i, x in enumerate(target) if x == item]
    return celtypes.IntType(hits[-1] if hits else -1)


K8S_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "isSorted": _is_sorted,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "sum": lambda items: functools.reduce(lambda a, b: a + b, items),
    "min": lambda items: min(items),
    "max": lambda items: max(items),
}


@functools.cache
def compile_rule(rule: str) -> Any:
    """A celpy program for one rule (syntax errors raise)."""
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=K8S_FUNCTIONS)


def evaluate_rule(rule: str, value: Json, schema: dict[str, Json]) -> bool | str:
    """True/False, or the evaluation error's text (the API server rejects on an error too)."""
    try:
        result = compile_rule(rule).evaluate({"self": to_cel(value, schema)})
    except celpy.CELEvalError as exc:
        return f"evaluation error: {exc.args[0] if exc.args else exc}"
    if isinstance(result, celpy.CELEvalError):
        return f"evaluation error: {result.args[0] if result.args else result}"
    if not isinstance(result, celtypes.BoolType):
        return f"rule returned {result!r}, not a bool"
    return bool(result)


def cel_errors(value: Json, schema: dict[str, Json], path: str = "") -> list[str]:
    """Step (c): every x-kubernetes-validations rule under this node, as `path: message`."""
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        verdict = evaluate_rule(rule["rule"], value, schema)
        if verdict is not True:
            where = (path + rule.get("fieldPath", "")).lstrip(".") or "<root>"
            text = rule["message"] if verdict is False else f"{rule['rule']}: {verdict}"
            errors.append(f"{where}: {text}")
    if isinstance(value, dict):
        props = schema.get("properties")
        for key, item in value.items():
            sub = props.get(key) if props is not None else schema.get("additionalProperties")
            if isinstance(sub, dict):
                errors += cel_errors(item, sub, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += cel_errors(item, schema["items"], f"{path}[{i}]")
    return errors


def admit(obj: Json) -> tuple[Json, list[str]]:
    """(the object as stored, with defaults; the errors): what `kubectl apply` would get."""
    errors = schema_errors(obj)
    if errors:
        return obj, errors
    stored = copy.deepcopy(obj)
    schema = openapi_schema()
    apply_defaults(stored, schema)
    return stored, cel_errors(stored, schema)


def validate(obj: Json) -> list[str]:
    """The API server's error messages for this object; empty when it is accepted."""
    return admit(obj)[1]
