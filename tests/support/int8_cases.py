"""Models and data sets of the int8 tests: a small CNN trained for a second on a labelled
synthetic task (so accuracy means something), and a model no int8 engine can reproduce."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tests.support.torch_models import TinyModel, _floats

CLASSES = 4


def task(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images [samples, 3, 16, 16] whose class is the quadrant with the brightest mean."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=samples)
    images = rng.standard_normal((samples, 3, 16, 16)).astype(np.float32)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        images[index, :, row * 8 : row * 8 + 8, col * 8 : col * 8 + 8] += 1.5
    return images, labels.astype(np.int64)


class QuadrantCnn(nn.Module):
    """3x16x16 -> 4 logits: conv, BatchNorm, ReLU, pooled, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(32, CLASSES)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).flatten(1))


def trained_cnn(steps: int = 60) -> TinyModel:
    """The quadrant CNN after `steps` Adam steps on the task (about a second on 2 cores)."""
    torch.manual_seed(0)
    module = QuadrantCnn()
    images, labels = task(512, seed=1)
    optimiser = torch.optim.Adam(module.parameters(), lr=0.02)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    for step in range(steps):
        batch = slice((step * 64) % 512, (step * 64) % 512 + 64)
        optimiser.zero_grad()
        nn.functional.cross_entropy(module(x[batch]), y[batch]).backward()
        optimiser.step()
    module.eval()
    return TinyModel(
        "quadrants",
        module,
        {"image": ((3, 16, 16), np.float32)},
        ["logits"],
        _floats(("image", (3, 16, 16))),
    )


class NearTies(nn.Module):
    """16 -> 4 scores, each the difference of two almost equal projections (1e-4 apart): the
    answer lives in differences far below int8's resolution, so no int8 engine keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Linear(16, 8, bias=False)
        with torch.no_grad():
            base = torch.randn(4, 16)
            self.project.weight.copy_(torch.cat([base, base + 1e-4 * torch.randn(4, 16)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.project(x)
        return h[:, 4:] - h[:, :4]


def near_ties() -> TinyModel:
    """The unquantizable model (fixed weights)."""
    torch.manual_seed(3)
    return TinyModel(
        "ties", NearTies().eval(), {"x": ((16,), np.float32)}, ["y"], _floats(("x", (16,)))
    )


def save_set(path: Path, **arrays: np.ndarray) -> str:
    """An .npz of the arrays; its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return hashlib.sha256(path.read_bytes()).hexdigest()
