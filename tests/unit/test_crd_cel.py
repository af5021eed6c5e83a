"""What the API server rejects (schema + CEL, via the harness), and that pydantic rejects it too."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from modelops_operator.api import ModelDeploymentSpec, format_validation_error, rules
from modelops_operator.api.spec import LOCAL_SOURCES
from tests.support.crd import admit, validate

SHA = "9f2c" + "0" * 60
DELETE = object()


def base() -> dict[str, Any]:
    """The smallest valid ModelDeployment."""
    return {
        "apiVersion": "modelops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "resnet", "namespace": "ml"},
        "spec": {
            "model": {"source": {"uri": "https://models.example.com/resnet50.onnx", "sha256": SHA}}
        },
    }


def changed(**changes: Any) -> dict[str, Any]:
    """base() with `a__b__c=value` set (DELETE removes the key)."""
    obj = base()
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = obj
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return obj


INPUT = {"name": "input", "dataType": "FP32", "dims": [3, 224, 224]}
GPU = {"engine": "tensorrt", "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}
SCALING = {"minReplicas": 1, "maxReplicas": 4, "target": 5000}

# (id, object, a field name the error must name, whether it is about spec content)
INVALID: list[tuple[str, dict[str, Any], str, bool]] = [
    # bounds and patterns (schema)
    ("sha256-uppercase", changed(spec__model__source__sha256=SHA.upper()), "sha256", True),
    ("sha256-63-chars", changed(spec__model__source__sha256=SHA[:63]), "sha256", True),
    ("sha256-missing", changed(spec__model__source__sha256=DELETE), "sha256", True),
    ("uri-http", changed(spec__model__source__uri="http://example.com/m.onnx"), "uri", True),
    ("uri-ftp", changed(spec__model__source__uri="ftp://example.com/m.onnx"), "uri", True),
    ("uri-space", changed(spec__model__source__uri="https://x.com/a b.onnx"), "uri", True),
    (
        "secret-name",
        changed(spec__model__source__credentialsSecret="My_Secret"),
        "credentialsSecret",
        True,
    ),
    ("format-unknown", changed(spec__model__format="tflite"), "format", True),
    (
        "dtype-unknown",
        changed(spec__model__inputs=[{**INPUT, "dataType": "FP8"}]),
        "dataType",
        True,
    ),
    ("tensor-name", changed(spec__model__inputs=[{**INPUT, "name": "1x"}]), "name", True),
    ("dims-below-minus-1", changed(spec__model__inputs=[{**INPUT, "dims": [-2]}]), "dims", True),
    ("dims-too-many", changed(spec__model__inputs=[{**INPUT, "dims": [1] * 9}]), "dims", True),
    ("batch-0", changed(spec__build={"maxBatchSize": 0}), "maxBatchSize", True),
    ("opt-batch-0", changed(spec__build={"optBatchSize": 0}), "optBatchSize", True),
    (
        "gpu-product-space",
        changed(spec__build={**GPU, "gpu": {"product": "A 100"}}),
        "product",
        True,
    ),
    ("atol-negative", changed(spec__build={"accuracy": {"atol": -0.1}}), "atol", True),
    ("replicas-negative", changed(spec__serving={"replicas": -1}), "replicas", True),
    ("instances-0", changed(spec__serving={"instancesPerReplica": 0}), "instancesPerReplica", True),
    (
        "quantity-word",
        changed(spec__serving={"resources": {"limits": {"cpu": "lots"}}}),
        "limits",
        True,
    ),
    (
        "quantity-negative",
        changed(spec__serving={"resources": {"requests": {"cpu": -1}}}),
        "requests",
        True,
    ),
    (
        "min-replicas-negative",
        changed(spec__scaling={**SCALING, "minReplicas": -1}),
        "minReplicas",
        True,
    ),
    ("idle-seconds-0", changed(spec__scaling={**SCALING, "idleSeconds": 0}), "idleSeconds", True),
    (
        "cold-start-timeout-over-the-router-timeouts",
        changed(spec__scaling={**SCALING, "coldStartTimeoutSeconds": 301}),
        "coldStartTimeoutSeconds",
        True,
    ),
    (
        "cold-start-timeout-0",
        changed(spec__scaling={**SCALING, "coldStartTimeoutSeconds": 0}),
        "coldStartTimeoutSeconds",
        True,
    ),
    ("max-replicas-missing", changed(spec__scaling={"target": 10}), "maxReplicas", True),
    ("target-0", changed(spec__scaling={**SCALING, "target": 0}), "target", True),
    ("metric-unknown", changed(spec__scaling={**SCALING, "metric": "cpu"}), "metric", True),
    (
        "error-rate-1.5",
        changed(spec__rollout={"canary": {"maxErrorRate": 1.5}}),
        "maxErrorRate",
        True,
    ),
    ("step-0", changed(spec__rollout={"canary": {"steps": [0, 100]}}), "steps", True),
    ("step-101", changed(spec__rollout={"canary": {"steps": [50, 101]}}), "steps", True),
    ("steps-empty", changed(spec__rollout={"canary": {"steps": []}}), "steps", True),
    ("steps-11", changed(spec__rollout={"canary": {"steps": list(range(90, 101))}}), "steps", True),
    (
        "threshold-0",
        changed(spec__rollout={"canary": {"failureThreshold": 0}}),
        "failureThreshold",
        True,
    ),
    (
        "deadline-10s",
        changed(spec__rollout={"progressDeadlineSeconds": 10}),
        "progressDeadlineSeconds",
        True,
    ),
    ("strategy-unknown", changed(spec__rollout={"strategy": "BlueGreen"}), "strategy", True),
    # unknown fields anywhere (kubectl --validate=strict)
    ("unknown-serving-image", changed(spec__serving={"image": "evil:latest"}), "image", True),
    (
        "unknown-serving-sa",
        changed(spec__serving={"serviceAccountName": "admin"}),
        "serviceAccountName",
        True,
    ),
    ("unknown-hostpath", changed(spec__model__source__hostPath="/etc"), "hostPath", True),
    ("unknown-spec-root", changed(spec__command=["sh"]), "command", True),
    ("unknown-canary", changed(spec__rollout={"canary": {"stepWeight": 5}}), "stepWeight", True),
    ("model-missing", changed(spec__model=DELETE), "model", True),
    ("spec-missing", changed(spec=DELETE), "spec", False),
    ("unknown-root", changed(extra={"a": 1}), "extra", False),
    # every CEL rule
    (
        "cel-min-gt-max",
        changed(spec__scaling={**SCALING, "minReplicas": 5, "maxReplicas": 2}),
        "minReplicas",
        True,
    ),
    (
        "cel-opt-gt-max",
        changed(spec__build={"maxBatchSize": 8, "optBatchSize": 16}),
        "optBatchSize",
        True,
    ),
    ("cel-opt-gt-default-max", changed(spec__build={"optBatchSize": 9}), "optBatchSize", True),
    (
        "cel-steps-decreasing",
        changed(spec__rollout={"canary": {"steps": [50, 10, 100]}}),
        "steps",
        True,
    ),
    (
        "cel-steps-repeated",
        changed(spec__rollout={"canary": {"steps": [10, 50, 50, 100]}}),
        "steps",
        True,
    ),
    ("cel-steps-not-100", changed(spec__rollout={"canary": {"steps": [10, 50]}}), "steps", True),
    ("cel-tensorrt-no-gpu", changed(spec__build={"engine": "tensorrt"}), "gpu", True),
    ("cel-torchscript-no-inputs", changed(spec__model__format="torchscript"), "inputs", True),
    (
        "cel-torchscript-empty-inputs",
        changed(spec__model__format="torchscript", spec__model__inputs=[]),
        "inputs",
        True,
    ),
    ("cel-file-uri", changed(spec__model__source__uri="file:///etc/hostname"), "uri", True),
    (
        "cel-file-uri-environ",
        changed(spec__model__source__uri="file:///proc/self/environ"),
        "uri",
        True,
    ),
    (
        "cel-shape-opt-above-max",
        changed(spec__build={"shapes": [{"name": "ids", "opt": [256], "max": [128]}]}),
        "opt",
        True,
    ),
    (
        "cel-shape-opt-below-min",
        changed(spec__build={"shapes": [{"name": "ids", "min": [8], "opt": [4], "max": [128]}]}),
        "opt",
        True,
    ),
    (
        "cel-shape-opt-length",
        changed(spec__build={"shapes": [{"name": "ids", "opt": [4, 4], "max": [128]}]}),
        "opt",
        True,
    ),
    (
        "cel-shape-min-above-max",
        changed(spec__build={"shapes": [{"name": "x", "min": [3, 64], "max": [3, 32]}]}),
        "min",
        True,
    ),
    (
        "cel-shape-min-length",
        changed(spec__build={"shapes": [{"name": "x", "min": [1], "max": [3, 32]}]}),
        "min",
        True,
    ),
    (
        "cel-shapes-unique",
        changed(spec__build={"shapes": [{"name": "ids", "max": [8]}, {"name": "ids", "max": [9]}]}),
        "shapes",
        True,
    ),
    (
        "cel-shapes-not-an-input",
        changed(
            spec__model__inputs=[{"name": "ids", "dataType": "INT64", "dims": [-1]}],
            spec__build={"shapes": [{"name": "mask", "max": [64]}]},
        ),
        "shapes",
        True,
    ),
    ("shape-dim-0", changed(spec__build={"shapes": [{"name": "ids", "max": [0]}]}), "max", True),
    ("shape-no-max", changed(spec__build={"shapes": [{"name": "ids", "opt": [4]}]}), "max", True),
    ("cel-inputs-unique", changed(spec__model__inputs=[INPUT, INPUT]), "inputs", True),
    ("cel-outputs-unique", changed(spec__model__outputs=[INPUT, INPUT]), "outputs", True),
    (
        "cel-secret-pvc",
        changed(
            spec__model__source={
                "uri": "pvc://models/r.onnx",
                "sha256": SHA,
                "credentialsSecret": "s",
            }
        ),
        "credentialsSecret",
        True,
    ),
    (
        "cel-secret-file",
        changed(
            spec__model__source={"uri": "file:///m/r.onnx", "sha256": SHA, "credentialsSecret": "s"}
        ),
        "uri",  # file:// itself is refused first; the credentials rule also fires in CEL
        True,
    ),
    (
        "cel-gpu-target-150",
        changed(
            spec__build=GPU, spec__scaling={**SCALING, "metric": "gpuUtilization", "target": 150}
        ),
        "target",
        True,
    ),
    (
        "cel-gpu-metric-no-gpu",
        changed(spec__scaling={**SCALING, "metric": "gpuUtilization", "target": 80}),
        "metric",
        True,
    ),
    ("cel-dims-0", changed(spec__model__outputs=[{**INPUT, "dims": [0, 10]}]), "dims", True),
    (
        "cel-https-no-path",
        changed(spec__model__source__uri="https://models.example.com"),
        "uri",
        True,
    ),
    ("cel-s3-no-key", changed(spec__model__source__uri="s3://bucket"), "uri", True),
    ("cel-s3-bad-bucket", changed(spec__model__source__uri="s3://My_Bucket/m.onnx"), "uri", True),
    ("cel-pvc-no-path", changed(spec__model__source__uri="pvc://models"), "uri", True),
    ("cel-pvc-bad-claim", changed(spec__model__source__uri="pvc://Models/m.onnx"), "uri", True),
]

VALID: list[tuple[str, dict[str, Any]]] = [
    ("minimal", base()),
    ("empty-objects", changed(spec__build={}, spec__serving={}, spec__rollout={"canary": {}})),
    ("recreate", changed(spec__rollout={"strategy": "Recreate"})),
    (
        "s3-with-secret",
        changed(
            spec__model__source={
                "uri": "s3://ml-models/r/50.onnx",
                "sha256": SHA,
                "credentialsSecret": "s3-creds",
            }
        ),
    ),
    ("pvc", changed(spec__model__source={"uri": "pvc://models/resnet/model.onnx", "sha256": SHA})),
    ("exported-program-without-inputs", changed(spec__model__format="exported-program")),
    (
        "shapes-for-a-sequence",
        changed(
            spec__model__format="exported-program",
            spec__build={
                "shapes": [
                    {"name": "input_ids", "min": [1], "opt": [64], "max": [128]},
                    {"name": "attention_mask", "max": [128]},
                    {"name": "pixels", "min": [3, 8, 8], "max": [3, 224, 224]},
                ]
            },
        ),
    ),
    (
        "torchscript",
        changed(
            spec__model__format="torchscript", spec__model__inputs=[{**INPUT, "dims": [-1, 3]}]
        ),
    ),
    (
        "tensorrt-gpu-scaling",
        changed(
            spec__build={**GPU, "precision": "fp16", "maxBatchSize": 32, "optBatchSize": 32},
            spec__scaling={**SCALING, "metric": "gpuUtilization", "target": 100},
        ),
    ),
    (
        "resources",
        changed(
            spec__serving={
                "resources": {
                    "limits": {"nvidia.com/gpu": 1, "memory": "4Gi"},
                    "requests": {"cpu": "500m"},
                }
            }
        ),
    ),
    ("single-step", changed(spec__rollout={"canary": {"steps": [100], "maxP99LatencyMs": 0.5}})),
    (
        "status",
        changed(
            status={
                "phase": "Ready",
                "replicas": 2,
                "lastScale": {"from": 1, "to": 2, "reason": "q", "time": "t"},
            }
        ),
    ),
]


@pytest.mark.parametrize(("obj", "field"), [c[1:3] for c in INVALID], ids=[c[0] for c in INVALID])
def test_api_server_rejects(obj: dict[str, Any], field: str) -> None:
    errors = validate(obj)
    assert errors, "accepted"
    assert any(field in e for e in errors), errors


SPEC_CASES = [c for c in INVALID if c[3]]


@pytest.mark.parametrize(
    ("obj", "field"), [c[1:3] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_operator_rejects_the_same(obj: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(obj["spec"])
    assert field in format_validation_error(info.value)


def test_enough_cases() -> None:
    assert len(INVALID) >= 25
    assert sum(1 for c in INVALID if c[0].startswith("cel-")) >= 16


@pytest.mark.parametrize("obj", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_specs_are_accepted_by_both(obj: dict[str, Any]) -> None:
    assert validate(obj) == []
    ModelDeploymentSpec.model_validate(obj["spec"])


@pytest.mark.parametrize("obj", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_api_server_defaults_agree_with_pydantic(obj: dict[str, Any]) -> None:
    stored, errors = admit(obj)
    assert errors == []
    wire = ModelDeploymentSpec.model_validate(obj["spec"]).to_wire()

    def check(server: Any, model: Any, path: str) -> None:
        if isinstance(server, dict):
            for key, value in server.items():
                check(value, model[key], f"{path}.{key}")
        else:
            assert server == model, path

    check(stored["spec"], wire, "spec")


def test_canary_steps_default_before_cel() -> None:
    stored, errors = admit(changed(spec__rollout={"canary": {}}))
    assert errors == []
    assert stored["spec"]["rollout"]["canary"]["steps"] == [10, 50, 100]
    assert "build" not in stored["spec"]  # no defaults where the parent is absent


def test_file_sources_are_refused_in_the_cluster_but_not_by_modelops_dev() -> None:
    obj = changed(spec__model__source__uri="file://models/m.onnx")
    assert validate(obj) == [f"spec.model.source.uri: {rules.MSG_FILE_URI}"]
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(obj["spec"])
    assert "`modelops dev`" in format_validation_error(info.value)
    spec = ModelDeploymentSpec.model_validate(obj["spec"], context={LOCAL_SOURCES: True})
    assert spec.model.source.uri == "file://models/m.onnx"


def test_resource_keys_are_checked_by_the_operator() -> None:
    obj = changed(spec__serving={"resources": {"limits": {"CPU cores!": 1}}})
    assert validate(obj) == []  # Kubernetes schemas cannot constrain map keys
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(obj["spec"])
    assert "spec.serving.resources.limits" in format_validation_error(info.value)


def test_harness_reports_path_and_message() -> None:
    errors = validate(changed(spec__scaling={**SCALING, "minReplicas": 5, "maxReplicas": 2}))
    assert errors == [
        "spec.scaling.minReplicas: spec.scaling.minReplicas must be <= spec.scaling.maxReplicas"
    ]


def test_format_validation_error_names_camel_case_paths() -> None:
    spec = copy.deepcopy(base()["spec"])
    spec["model"]["source"]["credentialsSecret"] = "Bad_Name"
    spec["build"] = {"maxBatchSize": 0}
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(spec)
    text = format_validation_error(info.value)
    assert "spec.model.source.credentialsSecret:" in text
    assert "spec.build.maxBatchSize:" in text
    assert "credentials_secret" not in text
    assert "max_batch_size" not in text


def test_format_validation_error_keeps_cross_field_messages() -> None:
    spec = changed(spec__scaling={**SCALING, "minReplicas": 5, "maxReplicas": 2})["spec"]
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(spec)
    assert format_validation_error(info.value) == (
        "spec.scaling.minReplicas must be <= spec.scaling.maxReplicas"
    )


ZERO = {**SCALING, "minReplicas": 0}
GATEWAY = {"mode": "GatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "gw"}]}}


@pytest.mark.parametrize(
    ("traffic", "mode"), [({"mode": "Replicas"}, "Replicas"), (GATEWAY, "GatewayAPI")]
)
def test_scale_to_zero_is_refused_outside_router_mode_naming_the_mode(
    traffic: dict[str, Any], mode: str
) -> None:
    obj = changed(spec__scaling=ZERO, spec__rollout={"traffic": traffic})
    assert validate(obj) == [f"spec.scaling.minReplicas: {rules.MSG_SCALE_TO_ZERO_MODE}"]
    assert mode in rules.MSG_SCALE_TO_ZERO_MODE
    with pytest.raises(ValidationError) as info:
        ModelDeploymentSpec.model_validate(obj["spec"])
    assert f"(the mode is {mode})" in format_validation_error(info.value)


@pytest.mark.parametrize(
    "rollout", [None, {}, {"traffic": {}}, {"traffic": {"mode": "Router"}}], ids=str
)
def test_scale_to_zero_is_accepted_in_router_mode(rollout: dict[str, Any] | None) -> None:
    obj = changed(spec__scaling=ZERO)
    if rollout is not None:
        obj["spec"]["rollout"] = rollout
    assert validate(obj) == []
    spec = ModelDeploymentSpec.model_validate(obj["spec"])
    assert spec.scaling is not None
    assert (spec.scaling.idle_seconds, spec.scaling.cold_start_timeout_seconds) == (300, 120)
    assert spec.scaling.floor == 1
