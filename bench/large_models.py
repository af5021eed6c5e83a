"""Synthetic multi-file ONNX models of a chosen size, and one build of one in a child process.

The model is a chain of `MatMul(x, W_i) -> Tanh` blocks over a width of 2048, so every weight is
16 MiB and the graph's external-data file reaches the size asked for; weights are random (scaled
by 1/sqrt(width), so activations stay of order 1) and written block by block, never all in
memory. The graph and its data file are packed into an uncompressed .tar (random floats do not
compress) and built through `modelops-build`'s pipeline in a fresh process, which reports its own
peak RSS (VmHWM) and the stage times.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from onnx import TensorProto, helper

WIDTH = 2048
BLOCK_BYTES = WIDTH * WIDTH * 4
GIB = 1024**3


def blocks_for(size_bytes: int) -> int:
    """How many 16 MiB blocks make a model of about `size_bytes`."""
    return max(1, round(size_bytes / BLOCK_BYTES))


def write_model(folder: Path, blocks: int, width: int = WIDTH, seed: int = 0) -> Path:
    """`folder/chain.onnx` + `folder/chain.weights`: `blocks` MatMul+Tanh blocks, streaming."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights, nodes = [], []
    data_name = "chain.weights"
    with (folder / data_name).open("wb") as data:
        for index in range(blocks):
            block = rng.standard_normal((width, width), dtype=np.float32) / np.sqrt(width)
            tensor = TensorProto(name=f"w{index}", data_type=TensorProto.FLOAT, dims=[width, width])
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data_name), ("offset", data.tell()),
                               ("length", block.nbytes)):  # fmt: skip
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
            data.write(block.tobytes())
            weights.append(tensor)
            source = "x" if index == 0 else f"h{index - 1}"
            nodes.append(helper.make_node("MatMul", [source, f"w{index}"], [f"m{index}"]))
            last = "y" if index == blocks - 1 else f"h{index}"
            nodes.append(helper.make_node("Tanh", [f"m{index}"], [last]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])
    graph = helper.make_graph(nodes, "chain", [x], [y], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = folder / "chain.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def write_archive(graph: Path, dest: Path) -> tuple[str, int]:
    """An uncompressed .tar of the graph and its data file; (sha256, size in bytes)."""
    with tarfile.open(dest, "w") as tar:
        for path in (graph, graph.with_name("chain.weights")):
            tar.add(path, arcname=path.name)
    digest = hashlib.sha256()
    with dest.open("rb") as handle:
        for chunk in iter(lambda: handle.read(8 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest(), dest.stat().st_size


def run_child(request: dict[str, Any]) -> dict[str, Any]:
    """Build `request` in a fresh Python process; its wall time, peak RSS and stage times."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "bench.large_models", json.dumps(request)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"build failed ({out.returncode}): {out.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return report | {"process_wall_s": round(wall, 3)}


SIZES_GIB = (0.25, 1.0, 2.5)
TINY_WIDTH = 256


def _request(archive: Path, sha256: str, store: Path, precision: str) -> dict[str, Any]:
    return {
        "sourceUri": str(archive),
        "sha256": sha256,
        "store": str(store),
        "precision": precision,
        "maxBatchSize": 4,
        "optBatchSize": 2,
        "profileSeconds": 0.2,
        "maxDownloadBytes": 8 * GIB,
    }


def run_large(workdir: Path, fp16_sizes: tuple[float, ...] = (1.0, 2.5)) -> dict[str, Any]:
    """Build each synthetic model (fp32, and fp16 for `fp16_sizes`) in its own process, then
    hit its key again; the fixed overhead is the peak RSS of building a 256 KiB model."""
    tiny = write_model(workdir / "tiny" / "src", 1, width=TINY_WIDTH)
    sha, _ = write_archive(tiny, workdir / "tiny" / "model.tar")
    overhead = run_child(
        _request(workdir / "tiny" / "model.tar", sha, workdir / "tiny" / "store", "fp32")
    )
    rows = []
    for size in SIZES_GIB:
        folder = workdir / f"{size}gib"
        graph = write_model(folder / "src", blocks_for(int(size * GIB)))
        sha, archive_bytes = write_archive(graph, folder / "model.tar")
        for path in (graph, graph.with_name("chain.weights")):
            path.unlink()  # only the archive is the source; keeps the benchmark's disk use down
        for precision in ("fp32", "fp16") if size in fp16_sizes else ("fp32",):
            request = _request(folder / "model.tar", sha, folder / f"store-{precision}", precision)
            built = run_child(request)
            hit = run_child(request)
            rows.append(
                {
                    "size_gib": size,
                    "archive_bytes": archive_bytes,
                    "precision": precision,
                    "build_s": built["build_s"],
                    "s_per_gib": round(built["build_s"] / size, 2),
                    "peak_rss_bytes": built["peak_rss_bytes"],
                    "stages_s": built["stages_s"],
                    "files": built["files"],
                    "key_hit_s": hit["build_s"],
                    "key_hit_cached": hit["cached"],
                }
            )
        shutil.rmtree(folder, ignore_errors=True)
    return {"overhead_rss_bytes": overhead["peak_rss_bytes"], "rows": rows}


def markdown(data: dict[str, Any]) -> str:
    """One row per build: size, time, time per GiB, peak RSS against 1.5x size + overhead."""
    overhead = data["overhead_rss_bytes"]
    head = ["model (external data)", "precision", "build", "per GiB", "peak RSS",
            "bound 1.5x + overhead", "fetch+extract", "reference", "engine", "gate+profile",
            "key hit"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in data["rows"]:
        bound = 1.5 * row["size_gib"] * GIB + overhead
        stages = row["stages_s"]
        cells = [
            f"{row['size_gib']:g} GiB", row["precision"], f"{row['build_s']:.1f} s",
            f"{row['s_per_gib']:.1f} s", f"{row['peak_rss_bytes'] / GIB:.2f} GiB",
            f"{bound / GIB:.2f} GiB ({'ok' if row['peak_rss_bytes'] <= bound else 'OVER'})",
            f"{stages.get('fetch', 0):.1f} s", f"{stages.get('reference', 0):.1f} s",
            f"{stages.get('engine', 0):.1f} s",
            f"{stages.get('gate', 0) + stages.get('profile', 0):.1f} s",
            f"{row['key_hit_s']:.3f} s" + ("" if row["key_hit_cached"] else " (NOT cached)"),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\nfixed overhead (peak RSS building a 256 KiB model): {overhead / 1024**2:.0f} MiB"
    )
    return "\n".join(lines)


def peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM, which starts afresh at exec (getrusage's ru_maxrss is
    inherited across fork and exec, so a child would report its parent's peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(body: str) -> int:
    """In the child: build, then print one JSON line with the figures."""
    from modelops_builder.pipeline import build
    from modelops_contract.request import BuildRequest

    started = time.perf_counter()
    result = build(BuildRequest.model_validate_json(body), local_source=True)
    report = {
        "build_s": round(time.perf_counter() - started, 3),
        "cached": result.cached,
        "peak_rss_bytes": peak_rss_bytes(),
        "stages_s": result.manifest.stage_seconds,
        "files": result.manifest.model_files,
        "max_abs_error": result.manifest.accuracy.max_abs_error
        if result.manifest.accuracy
        else None,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
