"""Regenerate examples/models/tiny-mlp.onnx deterministically and print its sha256.

The bytes depend only on the seed and on the torch version (it is written into the graph's
producer_version): with torch 2.13.0 this reproduces the committed file exactly. After a torch
upgrade, rerun it and put the printed sha256 into examples/cpu-onnxruntime.yaml.

    .venv/bin/python hack/make-example-model.py [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "examples" / "models" / "tiny-mlp.onnx"
SEED = 20240601


def make_model() -> nn.Module:
    """features[8] -> 16 -> ReLU -> logits[4], weights fixed by SEED."""
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def export(model: nn.Module) -> bytes:
    """ONNX bytes with a dynamic batch axis (legacy exporter: it needs no onnxscript)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter warns that dynamo is the new default; dynamo needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 8),),
            buffer,
            dynamo=False,
            input_names=["features"],
            output_names=["logits"],
            dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    return buffer.getvalue()


def main() -> int:
    """Write (or with --check, compare) the example model; print its sha256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file differs")
    args = parser.parse_args()
    data = export(make_model())
    digest = hashlib.sha256(data).hexdigest()
    if args.check:
        same = TARGET.exists() and TARGET.read_bytes() == data
        print(f"{digest}  {TARGET.relative_to(ROOT)} {'up to date' if same else 'DIFFERS'}")
        return 0 if same else 1
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(data)
    print(f"{digest}  {TARGET.relative_to(ROOT)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
