"""The engine key changes with every engine-affecting field, and with nothing else."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from modelops_builder.engines import EnginePlan, GpuInfo
from modelops_builder.pipeline import compute_key
from modelops_contract.key import engine_key, key_digest
from modelops_contract.request import BuildRequest

BASE: dict[str, Any] = {
    "model_sha256": "a" * 64,
    "format": "onnx",
    "engine": "tensorrt",
    "precision": "fp16",
    "max_batch_size": 32,
    "opt_batch_size": 8,
    "inputs": [{"name": "x", "dataType": "FP32", "dims": [3, 224, 224]}],
    "gpu_product": "NVIDIA-H100-80GB-HBM3",
    "tensorrt_version": "11.4.0",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_sha256", "b" * 64),
        ("format", "torchscript"),
        ("engine", "onnxruntime"),
        ("precision", "fp32"),
        ("max_batch_size", 64),
        ("opt_batch_size", 4),
        ("inputs", [{"name": "x", "dataType": "FP32", "dims": [3, 256, 256]}]),
        ("inputs", [{"name": "y", "dataType": "FP32", "dims": [3, 224, 224]}]),
        ("inputs", None),
        ("gpu_product", "NVIDIA-L4"),
        ("tensorrt_version", "11.5.0"),
        ("builder_version", "9.9.9"),
        ("shapes", [{"name": "x", "max": [3, 224, 224]}]),
    ],
)
def test_each_engine_field_changes_the_key(field: str, value: Any) -> None:
    assert engine_key(**BASE) != engine_key(**(BASE | {field: value}))


def test_key_format_and_stability() -> None:
    key = engine_key(**BASE)
    assert key.startswith("sha256:")
    assert len(key_digest(key)) == 64
    assert engine_key(**BASE) == key


def test_onnxruntime_keys_ignore_gpu_and_tensorrt() -> None:
    ort = BASE | {"engine": "onnxruntime"}
    assert engine_key(**ort) == engine_key(**(ort | {"gpu_product": "x", "tensorrt_version": "1"}))


def test_opt_batch_is_clamped_to_max() -> None:
    assert engine_key(**(BASE | {"opt_batch_size": 64})) == engine_key(
        **(BASE | {"opt_batch_size": 32})
    )


REQUEST: dict[str, Any] = {
    "sourceUri": "https://models.example.com/m.onnx",
    "sha256": "c" * 64,
    "store": "/engines",
    "maxBatchSize": 8,
    "optBatchSize": 4,
}
PLAN = EnginePlan("onnxruntime", GpuInfo(False))


@pytest.mark.parametrize(
    "serving",
    [
        {"modelName": "other"},
        {"servingBackend": "python"},
        {"store": "s3://elsewhere/engines"},
        {"sourceUri": "pvc://models/m.onnx"},
        {"profileSeconds": 0.1},
        {"atol": 0.5, "rtol": 0.5},
        {"maxDownloadBytes": 10},
    ],
)
def test_serving_and_build_only_fields_keep_the_key(serving: dict[str, Any]) -> None:
    base = BuildRequest.model_validate(REQUEST)
    other = BuildRequest.model_validate(REQUEST | serving)
    assert compute_key(base, PLAN) == compute_key(other, PLAN)


def test_a_fallback_is_keyed_as_what_was_built() -> None:
    request = BuildRequest.model_validate(REQUEST | {"engine": "tensorrt"})
    fallback = EnginePlan("onnxruntime", GpuInfo(False), fallback="GpuUnavailable")
    plain = BuildRequest.model_validate(REQUEST)
    assert compute_key(request, fallback) == compute_key(plain, PLAN)
    real = EnginePlan("tensorrt", GpuInfo(True, "NVIDIA H100"), tensorrt_version="11.4.0")
    assert compute_key(request, real) != compute_key(request, fallback)


SHAPES = [
    {"name": "input_ids", "min": [1], "opt": [64], "max": [128]},
    {"name": "attention_mask", "max": [128]},
]


@pytest.mark.parametrize(
    "other",
    [
        [SHAPES[0] | {"opt": [32]}],
        [SHAPES[0] | {"max": [256]}],
        [SHAPES[0] | {"min": None}],  # a defaulted min is not the same request as min [1]
        SHAPES[:1],
    ],
)
def test_each_shape_bound_changes_the_key(other: list[dict[str, Any]]) -> None:
    assert engine_key(**(BASE | {"shapes": SHAPES})) != engine_key(**(BASE | {"shapes": other}))


def test_shape_order_does_not_change_the_key() -> None:
    assert engine_key(**(BASE | {"shapes": SHAPES})) == engine_key(
        **(BASE | {"shapes": SHAPES[::-1]})
    )


def test_operator_and_builder_compute_the_same_key_with_shapes() -> None:
    from modelops_operator.api import ModelDeploymentSpec
    from modelops_operator.decide.build import desired_key
    from modelops_operator.render.build_request import build_request
    from modelops_operator.settings import Settings

    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {
                "source": {"uri": "https://m.example.com/bert.pt2", "sha256": "d" * 64},
                "format": "exported-program",
            },
            "build": {"maxBatchSize": 8, "optBatchSize": 4, "shapes": SHAPES},
        }
    )
    settings = Settings(namespaces=[])
    request = build_request(spec, settings, engine_key=None)
    assert compute_key(request, PLAN) == desired_key(spec, settings)


# Fixed vectors: the material below is written out by hand (sorted keys, compact JSON), and
# its sha256 was checked with `sha256sum`; a change of either side of the key breaks them.
MATERIAL = (
    '{"builder":"0.1.0","engine":"tensorrt","format":"onnx","gpu":"NVIDIA-H100-80GB-HBM3",'
    '"model":"' + "a" * 64 + '","precision":"fp16","profile":{"inputs":[{"dataType":"FP32",'
    '"dims":[3,224,224],"name":"x"}],"max":32,"min":1,"opt":8,"shapes":[]},"tensorrt":"11.4.0"}'
)
VECTORS = [
    ({}, "32e1e9b453dac653d12f7d75ffb41eb76ac1ea8a946356382358d6e7196e9477"),
    ({"engine": "onnxruntime"}, "0733f55c74e496478da4a2fce19d3f22f4692cc26428f95a96f8d11fe21316f4"),
    (
        {"shapes": [{"name": "x", "max": [3, 256, 256]}]},
        "52d34aba4daca53654760cbcf891387c0200139d436a9e149c16d20d7ac450fb",
    ),
]


def test_the_key_is_the_sha256_of_its_written_out_material() -> None:
    assert hashlib.sha256(MATERIAL.encode()).hexdigest() == VECTORS[0][1]


@pytest.mark.parametrize(("change", "digest"), VECTORS)
def test_engine_key_fixed_vectors(change: dict[str, Any], digest: str) -> None:
    assert engine_key(**(BASE | change), builder_version="0.1.0") == f"sha256:{digest}"
