"""Tiny deterministic torch models for the integration tests, and their ONNX export.

Shared by the serving tests and the pipeline's tests (import `tiny_models`, `export_onnx`). Each
model is small enough to export and build in well under a second on 2 cores, yet covers one
serving concern: a plain MLP, a CNN with BatchNorm (folded at export), two inputs and two outputs,
and int64 token ids through an embedding (out-of-range ids make ONNX Runtime fail, which is how
the tests reach the per-request error path).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

VOCAB = 50
SEQ = 12
OPSET = 17


class Mlp(nn.Module):
    """16 -> 32 -> 4."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCnn(nn.Module):
    """3x16x16 image -> 10 logits, with BatchNorm whose running stats are not the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, 10)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                # Non-trivial statistics, so a wrong BatchNorm fold would show in the outputs.
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).flatten(1))


class TwoInTwoOut(nn.Module):
    """(a[8], b[8]) -> (mixed[4] = f(a) + g(b), gated[8] = a * sigmoid(b))."""

    def __init__(self) -> None:
        super().__init__()
        self.fa = nn.Linear(8, 4)
        self.fb = nn.Linear(8, 4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fa(a) + self.fb(b), a * torch.sigmoid(b)


class TokenClassifier(nn.Module):
    """int64 token ids [SEQ] -> embedding mean -> 3 class scores."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids).mean(dim=1))


@dataclass
class TinyModel:
    """A torch module with its I/O signature (dims without the batch axis)."""

    name: str
    module: nn.Module
    inputs: dict[str, tuple[tuple[int, ...], Any]]
    outputs: list[str]
    sampler: Callable[[np.random.Generator, int], dict[str, np.ndarray]] = field(repr=False)

    def sample(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Deterministic inputs of the given batch size."""
        return self.sampler(np.random.default_rng(seed), batch)

    def reference(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The torch outputs for these inputs (the ground truth the engine is compared with)."""
        with torch.no_grad():
            out = self.module(*(torch.from_numpy(feeds[n]) for n in self.inputs))
        values = out if isinstance(out, tuple) else (out,)
        return {n: v.numpy() for n, v in zip(self.outputs, values, strict=True)}

    def signature(self) -> list[dict[str, Any]]:
        """Inputs as ModelDeployment/BuildRequest tensors (camelCase keys)."""
        names = {np.float32: "FP32", np.int64: "INT64"}
        return [
            {"name": n, "dataType": names[dtype], "dims": list(dims)}
            for n, (dims, dtype) in self.inputs.items()
        ]


def _floats(*shapes: tuple[str, tuple[int, ...]]) -> Callable[..., dict[str, np.ndarray]]:
    def sample(rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
        return {n: rng.standard_normal((batch, *s)).astype(np.float32) for n, s in shapes}

    return sample


def _tokens(rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    return {"ids": rng.integers(0, VOCAB, size=(batch, SEQ), dtype=np.int64)}


def tiny_models(seed: int = 0) -> dict[str, TinyModel]:
    """The four test models, with weights fixed by `seed`, in eval mode."""
    torch.manual_seed(seed)
    f32 = np.float32
    models = [
        TinyModel("mlp", Mlp(), {"x": ((16,), f32)}, ["y"], _floats(("x", (16,)))),
        TinyModel(
            "cnn",
            SmallCnn(),
            {"image": ((3, 16, 16), f32)},
            ["logits"],
            _floats(("image", (3, 16, 16))),
        ),
        TinyModel(
            "twoio",
            TwoInTwoOut(),
            {"a": ((8,), f32), "b": ((8,), f32)},
            ["mixed", "gated"],
            _floats(("a", (8,)), ("b", (8,))),
        ),
        TinyModel("tokens", TokenClassifier(), {"ids": ((SEQ,), np.int64)}, ["scores"], _tokens),
    ]
    for model in models:
        model.module.eval()
    return {m.name: m for m in models}


def export_onnx(model: TinyModel, path: Path) -> str:
    """Export with a dynamic batch axis (legacy exporter: no onnxscript here); return sha256."""
    example = tuple(torch.from_numpy(a) for a in model.sample(2).values())
    axes = {n: {0: "batch"} for n in [*model.inputs, *model.outputs]}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter warns that dynamo is the default now; dynamo needs onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.module,
            example,
            buffer,
            dynamo=False,
            input_names=list(model.inputs),
            output_names=model.outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
        )
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
