"""INT8 against fp32, same source, same run, ONNX Runtime on this CPU.

Three models, each trained here for a few hundred steps on a labelled synthetic task (so that
accuracy means something), saved once, then built by `pipeline.build` twice from the same
file: fp32 and int8 (calibrated on 256 training-distribution samples, gated on a labelled set of
200):

1. the ResNet-18 layout (bench_build.ResNet18, 11.2 M parameters with a 4-class head) on 3x64x64
   images, 4 classes: the faint colour cast (red, green, blue, none) of a noise image;
2. the BERT-like encoder of the examples (hack/make-transformer-examples.py), sequences of 32
   tokens, 2 classes: is the first (pooled) token in the lower half of the vocabulary;
3. an MLP 256-1024-1024-10, 10 classes: the argmax of a fixed random linear teacher.

Per model: engine size ratio (int8 / fp32, files on disk), throughput ratio at batch 8 at the
opt shape (both store engines in ONNX Runtime, measured alternately with the builder's profiler),
agreement with fp32 (argmax) on 1,000 held-out inputs, accuracy of both on them, and the build's
own figures. The CPU's int8 dot-product flags (avx512_vnni, avx_vnni, amx) are recorded.
Every int8 build is gated at the default minAgreement 0.99 (and maxAccuracyDrop 0.01 on the
labelled set); a model the gate refuses is recorded with the gate's message, and built again at
minAgreement 0.95 so that its figures can still be compared (marked `gate_refused`).

    .venv/bin/python -m bench.bench_int8            # about 3 minutes on 2 vCPUs
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.bench_build import ResNet18
from bench.harness import write_results

ROOT = Path(__file__).resolve().parents[1]
HELD_OUT, CALIBRATION, GATE = 1000, 256, 200
BATCH = 8
PROFILE_S = 3.0


@dataclass
class Case:
    """One model, its task, its inputs' names and how to save it."""

    name: str
    module: nn.Module
    sample: Callable[[np.random.Generator, int], tuple[dict[str, np.ndarray], np.ndarray]]
    steps: int
    batch: int
    lr: float


def _colours(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Noise images with a faint colour cast: red, green, blue or none is the class."""
    labels = rng.integers(0, 4, size=n)
    images = rng.standard_normal((n, 3, 64, 64)).astype(np.float32)
    for index, label in enumerate(labels):
        if label < 3:
            images[index, label] += 0.25
    return {"image": images}, labels


def _first_token(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Random sequences of 32 tokens; the class: is the first token in the lower half."""
    ids = rng.integers(0, 512, (n, 32))
    feeds = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((n, 32), np.int64)}
    return feeds, (ids[:, 0] < 256).astype(np.int64)


_TEACHER = np.random.default_rng(99).standard_normal((256, 10)).astype(np.float32)


def _teacher(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    x = rng.standard_normal((n, 256)).astype(np.float32)
    return {"x": x}, np.argmax(x @ _TEACHER, axis=1).astype(np.int64)


class Mlp(nn.Module):
    """256 -> 1024 -> 1024 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(256, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _bert() -> nn.Module:
    """The examples' BERT-like encoder class (hack/make-transformer-examples.py)."""
    path = ROOT / "hack" / "make-transformer-examples.py"
    spec = importlib.util.spec_from_file_location("make_transformer_examples", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.BertLike()  # type: ignore[no-any-return]


def _resnet() -> nn.Module:
    model = ResNet18()
    model.fc = nn.Linear(512, 4)
    return model


def cases() -> list[Case]:
    """The three models, fresh weights (seeded)."""
    torch.manual_seed(0)
    return [
        Case("resnet18", _resnet(), _colours, 40, 16, 1e-3),
        Case("bert-encoder", _bert(), _first_token, 150, 32, 1e-3),
        Case("mlp", Mlp(), _teacher, 400, 64, 5e-4),
    ]


def train(case: Case) -> float:
    """A fixed number of Adam steps on the task (a few seconds on an idle machine; a count, not
    a time, so a busy machine trains the same model); returns the seconds spent."""
    rng = np.random.default_rng(1)
    optimiser = torch.optim.Adam(case.module.parameters(), lr=case.lr)
    case.module.train()
    start = time.perf_counter()
    for _ in range(case.steps):
        feeds, labels = case.sample(rng, case.batch)
        optimiser.zero_grad()
        logits = case.module(*(torch.from_numpy(v) for v in feeds.values()))
        nn.functional.cross_entropy(logits, torch.from_numpy(labels)).backward()
        optimiser.step()
    case.module.eval()
    return time.perf_counter() - start


def export(case: Case, folder: Path) -> tuple[Path, str, str]:
    """The source file: ONNX with a dynamic batch axis, or for the encoder an ExportedProgram
    with dynamic batch and sequence (the legacy ONNX exporter bakes the sequence length into
    the attention's reshapes); (path, sha256, format)."""
    feeds, _ = case.sample(np.random.default_rng(0), 2)
    names = list(feeds)
    if "input_ids" in feeds:
        path = folder / f"{case.name}.pt2"
        batch = torch.export.Dim("batch", min=1, max=64)
        seq = torch.export.Dim("seq", min=1, max=128)
        example = tuple(torch.from_numpy(v) for v in feeds.values())
        program = torch.export.export(
            case.module, example, dynamic_shapes=tuple({0: batch, 1: seq} for _ in names)
        )
        torch.export.save(program, path)
        return path, hashlib.sha256(path.read_bytes()).hexdigest(), "exported-program"
    path = folder / f"{case.name}.onnx"
    axes = {n: {0: "batch"} for n in names}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            case.module,
            tuple(torch.from_numpy(v) for v in feeds.values()),
            buffer,
            dynamo=False,
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes | {"logits": {0: "batch"}},
            opset_version=17,
        )
    path.write_bytes(buffer.getvalue())
    return path, hashlib.sha256(buffer.getvalue()).hexdigest(), "onnx"


def _save(path: Path, **arrays: np.ndarray) -> dict[str, str]:
    with path.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return {"sourceUri": path.as_uri(), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _run(session: Any, feeds: dict[str, np.ndarray]) -> np.ndarray:
    parts = []
    for start in range(0, len(next(iter(feeds.values()))), 64):
        parts.append(session.run(None, {k: v[start : start + 64] for k, v in feeds.items()})[0])
    return np.concatenate(parts)


def cpu_flags() -> dict[str, Any]:
    """The int8 dot-product flags of this CPU (and its model name)."""
    text = Path("/proc/cpuinfo").read_text()
    flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split())  # type: ignore[union-attr]
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    wanted = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "amx_bf16", "avx512_bf16")
    return {
        "model": model.group(1) if model else "unknown",
        "int8_dot_product": {flag: flag in flags for flag in wanted},
    }


def measure_case(case: Case, work: Path) -> dict[str, Any]:
    """Train, build fp32 and int8, compare."""
    import onnxruntime as ort

    from modelops_builder.errors import BuildError
    from modelops_builder.pipeline import build
    from modelops_builder.profile import measure
    from modelops_contract.request import BuildRequest, TensorSig

    seconds = train(case)
    source, sha, fmt = export(case, work)
    calibration, _ = case.sample(np.random.default_rng(2), CALIBRATION)
    gate, gate_labels = case.sample(np.random.default_rng(3), GATE)
    held, labels = case.sample(np.random.default_rng(4), HELD_OUT)
    dims = {n: list(v.shape[1:]) for n, v in held.items()}
    shapes = [{"name": n, "max": d} for n, d in dims.items() if n != "image" and n != "x"]
    base = {
        "sourceUri": source.as_uri(),
        "sha256": sha,
        "format": fmt,
        "store": str(work / "store"),
        "maxBatchSize": BATCH,
        "optBatchSize": BATCH,
        "profileSeconds": 1.0,
        "modelName": case.name.replace("-", "_"),
        "shapes": shapes or None,
    }
    results: dict[str, Any] = {}
    refused: str | None = None
    for precision in ("fp32", "int8"):
        extra: dict[str, Any] = {"precision": precision}
        if precision == "int8":
            extra["calibration"] = {"data": _save(work / "cal.npz", **calibration)}
            extra["labelledSet"] = _save(work / "gate.npz", **gate, labels=gate_labels)
        start = time.perf_counter()
        try:
            built = build(BuildRequest.model_validate(base | extra), local_source=True)
        except BuildError as exc:
            if exc.reason != "AccuracyGateFailed":
                raise
            refused = exc.message
            print(f"{case.name}: the int8 gate refused: {refused[:300]}", file=sys.stderr)
            extra |= {"minAgreement": 0.95, "maxAccuracyDrop": 0.05}
            built = build(BuildRequest.model_validate(base | extra), local_source=True)
        wall = time.perf_counter() - start
        version = built.manifest.version_dir(built.entry)
        files = built.manifest.engine_files()
        results[precision] = {
            "manifest": built.manifest,
            "path": version / files[0],
            "bytes": sum((version / f).stat().st_size for f in files),
            "build_s": round(wall, 2),
        }
    sessions = {p: ort.InferenceSession(str(r["path"])) for p, r in results.items()}
    outputs = {p: _run(s, held) for p, s in sessions.items()}
    agree = float((outputs["fp32"].argmax(1) == outputs["int8"].argmax(1)).mean())
    accuracy = {p: float((o.argmax(1) == labels).mean()) for p, o in outputs.items()}
    signature = [
        TensorSig(name=n, data_type="FP32" if v.dtype == np.float32 else "INT64", dims=dims[n])
        for n, v in held.items()
    ]
    throughput: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(2):  # alternate, so drifts of a shared machine hit both
        for precision, session in sessions.items():
            runner = _SessionRunner(session)
            point = measure(runner, signature, BATCH, PROFILE_S, dims)
            throughput[precision].append(point.throughput)
    best = {p: max(v) for p, v in throughput.items()}
    int8 = results["int8"]["manifest"]
    return {
        "model": case.name,
        "train_s": round(seconds, 1),
        "fp32_bytes": results["fp32"]["bytes"],
        "int8_bytes": results["int8"]["bytes"],
        "size_ratio": round(results["int8"]["bytes"] / results["fp32"]["bytes"], 3),
        "throughput_batch8": {p: round(v, 1) for p, v in best.items()},
        "throughput_ratio": round(best["int8"] / best["fp32"], 3),
        "agreement": agree,
        "accuracy": accuracy,
        "held_out": HELD_OUT,
        "build_s": {p: r["build_s"] for p, r in results.items()},
        "gate_refused": refused,
        "build_gate": int8.accuracy.model_dump(mode="json", exclude_none=True),
        "build_baseline": int8.baseline.model_dump(mode="json") if int8.baseline else None,
        "quantized_nodes": int8.quantization.quantized_nodes if int8.quantization else None,
        "kept_float": int8.quantization.kept_float if int8.quantization else None,
    }


class _SessionRunner:
    """The profiler's Runner over an ONNX Runtime session."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.output_names = [o.name for o in session.get_outputs()]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        return list(self.session.run(self.output_names, feeds))


def main() -> int:
    """Run every case; write bench/results/int8.json."""
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="modelops-int8-") as folder:
        for case in cases():
            print(f"{case.name} ...", file=sys.stderr)
            row = measure_case(case, Path(folder))
            print(
                f"{case.name}: size {row['size_ratio']}x, throughput {row['throughput_ratio']}x, "
                f"agreement {row['agreement']:.4f}, accuracy {row['accuracy']}",
                file=sys.stderr,
            )
            rows.append(row)
    import os

    import onnxruntime

    payload = {
        "machine": cpu_flags()
        | {"cpus": len(os.sched_getaffinity(0)), "load_average": os.getloadavg()},
        "onnxruntime": onnxruntime.__version__,
        "targets": {"size_ratio_max": 0.3, "cnn_throughput_ratio_min": 1.5, "cnn_agreement": 0.99},
        "models": rows,
    }
    print(write_results("int8", payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
