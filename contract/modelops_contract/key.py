"""The engine key: one digest of everything that changes the engine, and nothing else.

The operator names the build Job and the store entry by it; the builder computes it when a human
builds by hand. One function, so both always agree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from . import BUILDER_VERSION
from .quantization import DEFAULT_METHOD
from .request import BuildRequest

KEY_PREFIX = "sha256:"


def engine_key(
    *,
    model_sha256: str,
    format: str,
    engine: str,
    precision: str,
    max_batch_size: int,
    opt_batch_size: int,
    inputs: Sequence[dict[str, Any]] | None,
    gpu_product: str | None,
    tensorrt_version: str | None,
    shapes: Sequence[Mapping[str, Any]] | None = None,
    builder_version: str = BUILDER_VERSION,
    calibration: Mapping[str, Any] | None = None,
) -> str:
    """`sha256:<hex>` over the fields that change the built engine, and nothing else.

    Serving-only settings (replicas, batching delay, instances, resources) are deliberately not
    inputs: changing them must roll out the same engine without a rebuild. `calibration`
    (int8 only: the set's sha256 or None, the method, the nodes kept in float) enters the
    material only for int8, so every fp32/fp16 key stays what it was (they name stored engines).
    """
    material = {
        "model": model_sha256,
        "format": format,
        "engine": engine,
        "precision": precision,
        "profile": {
            "min": 1,
            "opt": min(opt_batch_size, max_batch_size),
            "max": max_batch_size,
            "inputs": [
                {"name": i["name"], "dataType": i["dataType"], "dims": list(i["dims"])}
                for i in inputs or []
            ],
            # Shape ranges shape the TensorRT profile and what the gate and profiler run; their
            # order in the spec does not matter, an absent bound hashes as null (its default).
            "shapes": sorted(
                (
                    {"name": s["name"], **{b: s.get(b) for b in ("min", "opt", "max")}}
                    for s in shapes or []
                ),
                key=lambda s: str(s["name"]),
            ),
        },
        "builder": builder_version,
        # ONNX Runtime engines are portable ONNX graphs: the GPU and TensorRT version matter
        # only for TensorRT plans.
        "tensorrt": tensorrt_version if engine == "tensorrt" else None,
        "gpu": gpu_product if engine == "tensorrt" else None,
    }
    if precision == "int8":
        material["calibration"] = dict(calibration or {})
    blob = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return KEY_PREFIX + hashlib.sha256(blob).hexdigest()


def int8_material(request: BuildRequest) -> dict[str, Any]:
    """What besides the model shapes an int8 engine and its gate: the calibration set's sha256
    (None: the builder's own inputs), the method, the nodes kept in float, and the gate's
    settings (an entry is reused without running the gate again, so a looser gate's entry must
    not serve a stricter spec). Empty for fp32/fp16, whose keys never include it."""
    if request.precision != "int8":
        return {}
    calibration = request.calibration
    return {
        "data": calibration.data.sha256 if calibration and calibration.data else None,
        "method": str(calibration.method if calibration else DEFAULT_METHOD),
        "keepFloat": sorted(calibration.keep_float) if calibration else [],
        "gate": {
            "metric": request.metric,
            "minAgreement": request.min_agreement,
            "topK": request.top_k,
            "minAccuracy": request.min_accuracy,
            "maxAccuracyDrop": request.max_accuracy_drop,
            "labels": request.labelled_set.sha256 if request.labelled_set else None,
            "atol": request.atol,
            "rtol": request.rtol,
        },
    }


def key_digest(key: str) -> str:
    """The hex part of a key: the store folder's name."""
    return key.removeprefix(KEY_PREFIX)
