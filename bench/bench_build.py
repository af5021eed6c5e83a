"""Benchmark: CPU engine builds (docs/builder.md, "Large models").

1. A ResNet-18 (11.7 M parameters, random weights, defined here: torchvision is not installed)
   saved as TorchScript, built through `pipeline.build` three times into a fresh store: fp32,
   fp16 (another key), fp32 again (an engine-key hit, ~0 s).
2. Synthetic multi-file ONNX models of 0.25, 1 and 2.5 GiB (a .tar of the graph and its
   external-data file, bench/large_models.py), each built in its own process, which reports its
   peak RSS; then the same request again (a key hit). The 1 and 2.5 GiB models are also built
   in fp16.
   The fixed overhead is the peak RSS of building a 256 KiB model the same way; the target is
   peak RSS <= 1.5 x model size + that overhead. Needs about 3x the largest model in free disk.

Prints markdown tables and writes bench/results/build.json.

    .venv/bin/python -m bench.bench_build [--store DIR] [--skip-resnet] [--skip-large]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"
INPUT_NAME, IMAGE = "input", (3, 224, 224)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.down(x))


class ResNet18(nn.Module):
    """The ResNet-18 layout (1.8 GFLOPs per 224x224 image, 1000 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks: list[nn.Module] = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def save_torchscript(path: Path, seed: int = 0) -> str:
    """Trace the ResNet-18 (random weights fixed by `seed`) to TorchScript; return its sha256."""
    torch.manual_seed(seed)
    model = ResNet18().eval()
    with torch.no_grad(), warnings.catch_warnings():
        # A TorchScript source on purpose (still supported): torch 2.13 calls it deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, torch.zeros(1, *IMAGE))
        traced.save(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_request(source: Path, sha256: str, store: Path, precision: str, **extra: Any) -> Any:
    """A BuildRequest for the ResNet-18 TorchScript file (ONNX Runtime engine, batch 1..8)."""
    from modelops_contract.request import BuildRequest, TensorSig

    return BuildRequest(
        source_uri=source.as_uri(),
        sha256=sha256,
        format="torchscript",
        inputs=[TensorSig(name=INPUT_NAME, data_type="FP32", dims=list(IMAGE))],
        engine="onnxruntime",
        precision=precision,  # type: ignore[arg-type]
        max_batch_size=8,
        opt_batch_size=8,
        store=str(store),
        model_name="resnet18",
        **extra,
    )


def run(store: Path, workdir: Path) -> dict[str, Any]:
    """The three builds; returns the JSON written to bench/results/build.json."""
    from modelops_builder.pipeline import build

    source = workdir / "resnet18.pt"
    source.parent.mkdir(parents=True, exist_ok=True)
    sha256 = save_torchscript(source)
    rows: list[dict[str, Any]] = []
    for label, precision in (("fp32", "fp32"), ("fp16", "fp16"), ("fp32 (key hit)", "fp32")):
        start = time.perf_counter()
        result = build(build_request(source, sha256, store, precision), local_source=True)
        wall = time.perf_counter() - start
        manifest = result.manifest
        profile = {p.batch: p for p in manifest.profile}
        top = profile.get(manifest.opt_batch_size)
        rows.append(
            {
                "build": label,
                "cached": result.cached,
                "wall_s": round(wall, 3),
                "stages_s": {k: round(v, 3) for k, v in manifest.stage_seconds.items()},
                "max_abs_error": manifest.accuracy.max_abs_error if manifest.accuracy else None,
                "opt_batch_throughput": top.throughput if top else None,
                "opt_batch_p50_ms": top.p50_ms if top else None,
            }
        )
        print(f"{label}: {wall:.2f} s (cached={result.cached})", file=sys.stderr)
    return {
        "model": "ResNet-18 layout, random weights, TorchScript source, 3x224x224 FP32",
        "machine": machine(),
        "builds": rows,
    }


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": None,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def markdown(data: dict[str, Any]) -> str:
    """The table of stage times (pipeline order), one row per build; a key hit has no stages."""
    from modelops_builder.pipeline import STAGES

    seen = {s for row in data["builds"] for s in row["stages_s"]}
    stages = [s for s in STAGES if s in seen]
    head = ["build", *stages, "total (wall)", "max abs err", "batch-8 samples/s (profile)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in data["builds"]:
        cells = [row["build"]]
        if row["cached"]:
            cells += ["-"] * len(stages) + [f"{row['wall_s']:.3f} s (engine-key hit)", "-", "-"]
        else:
            cells += [f"{row['stages_s'][s]:.2f}" if s in row["stages_s"] else "-" for s in stages]
            err, tput = row["max_abs_error"], row["opt_batch_throughput"]
            cells.append(f"{row['wall_s']:.2f} s")
            cells.append(f"{err:.1e}" if err is not None else "-")
            cells.append(f"{tput:.1f}" if tput is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    """Run the benchmarks, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="engine store (default: a fresh temp folder)")
    parser.add_argument("--skip-resnet", action="store_true", help="only the large models")
    parser.add_argument("--skip-large", action="store_true", help="only the ResNet-18 builds")
    args = parser.parse_args()
    results_file = RESULTS / "build.json"
    data: dict[str, Any] = json.loads(results_file.read_text()) if results_file.exists() else {}
    with tempfile.TemporaryDirectory(prefix="modelops-bench-build-") as tmp:
        if not args.skip_resnet:
            store = args.store or Path(tmp) / "store"
            store.mkdir(parents=True, exist_ok=True)
            data |= run(store.resolve(), Path(tmp))
            print(markdown(data))
        if not args.skip_large:
            from bench.large_models import markdown as large_markdown
            from bench.large_models import run_large

            data["large"] = run_large(Path(tmp) / "large") | {"machine": machine()}
            print(large_markdown(data["large"]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
