"""One ModelDeployment for the render tests: a TensorRT build on an H100, an s3 source read
with the tenant's Secret, three replicas; `make_md(**spec)` replaces top-level spec parts."""

from __future__ import annotations

from typing import Any

from modelops_operator.api import ModelDeployment

KEY = "sha256:" + "ab" * 32
UID = "0f6c5a5e-1111-2222-3333-444455556666"


def make_md(**spec: Any) -> ModelDeployment:
    """ModelDeployment `ml/bert` (generation 4) with the base spec updated by `spec`."""
    base: dict[str, Any] = {
        "model": {
            "source": {
                "uri": "s3://bucket/m.onnx",
                "sha256": "cd" * 32,
                "credentialsSecret": "s3-reader",
            }
        },
        "build": {"engine": "tensorrt", "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}},
        "serving": {"replicas": 3},
    }
    base.update(spec)
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "bert", "namespace": "ml", "uid": UID, "generation": 4},
            "spec": base,
        }
    )
