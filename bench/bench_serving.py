"""Benchmark: the ResNet-18-sized engine through Triton vs called in-process.

The fp32 ONNX Runtime engine of bench_build's ResNet-18 is built with `pipeline.build` (a key hit
when --store already holds it), served by the real Triton from the nvidia-pytriton wheel (python
backend running ONNX Runtime, dynamic batching on, max batch 8), and driven by concurrent client
threads over binary HTTP and gRPC at batch 1 and 8. The baseline is the same ONNX graph run by one
in-process ONNX Runtime session with the session options of triton_cpu/model.py. Each cell runs
for a bounded time (--seconds of Triton plus as many in-process, split into --rounds alternating
windows: the machine is shared, and pairing the windows keeps other tenants' load out of the
ratio); throughput is samples per second, latency per request.

    .venv/bin/python -m bench.bench_serving [--seconds 20] [--clients 4] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_build import IMAGE, INPUT_NAME, RESULTS, build_request, machine, save_torchscript

MODEL = "resnet18"
BATCHES = (1, 8)
QUEUE_DELAY_US = 500


@dataclass
class Window:
    """Latencies (seconds) of the requests of one timed window."""

    batch: int
    elapsed: float
    latencies: list[float]


@dataclass
class Cell:
    """One protocol x batch: Triton against the in-process baseline of the same rounds."""

    path: str
    batch: int
    clients: int
    seconds: float
    requests: int
    throughput: float
    p50_ms: float
    p99_ms: float
    inprocess_throughput: float
    inprocess_p99_ms: float
    ratio: float


def _figures(windows: list[Window]) -> tuple[float, float, float, int]:
    """Samples/s over all windows, p50 and p99 in ms, request count."""
    lat = [v for w in windows for v in w.latencies]
    elapsed = sum(w.elapsed for w in windows)
    ms = np.asarray(lat) * 1000
    throughput = len(lat) * windows[0].batch / elapsed
    return throughput, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(lat)


class InProcess:
    """One caller running the graph back to back, with model.py's session options."""

    def __init__(self, onnx_path: Path, batch: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 0
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.batch = batch
        self.x = np.random.default_rng(0).standard_normal((batch, *IMAGE)).astype(np.float32)
        for _ in range(2):
            self.session.run(None, {INPUT_NAME: self.x})

    def window(self, seconds: float) -> Window:
        """Run for `seconds`."""
        lat: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            self.session.run(None, {INPUT_NAME: self.x})
            lat.append(time.perf_counter() - t0)
        return Window(self.batch, time.perf_counter() - start, lat)


def _client_loop(
    protocol: str, url: str, batch: int, output: str, start: threading.Barrier, stop: list[float]
) -> list[float]:
    """Send one pre-encoded batch back to back until the deadline in stop[0]."""
    x = np.random.default_rng(batch).standard_normal((batch, *IMAGE)).astype(np.float32)
    if protocol == "grpc":
        import tritonclient.grpc as client_mod

        client: Any = client_mod.InferenceServerClient(url)
        inp = client_mod.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        outputs = None
    else:
        import tritonclient.http as client_mod  # type: ignore[no-redef]

        client = client_mod.InferenceServerClient(url, network_timeout=120)
        inp = client_mod.InferInput(INPUT_NAME, list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        outputs = [client_mod.InferRequestedOutput(output, binary_data=True)]
    lat: list[float] = []
    try:
        client.infer(MODEL, [inp], outputs=outputs)  # warm-up: connection set up
        start.wait()
        while time.perf_counter() < stop[0]:
            t0 = time.perf_counter()
            client.infer(MODEL, [inp], outputs=outputs)
            lat.append(time.perf_counter() - t0)
    finally:
        client.close()
    return lat


def triton_window(
    protocol: str, url: str, batch: int, output: str, clients: int, seconds: float
) -> Window:
    """`clients` threads, each with its own client, for `seconds` after a common start."""
    barrier = threading.Barrier(clients + 1)
    stop = [float("inf")]
    results: list[list[float]] = [[] for _ in range(clients)]

    def work(i: int) -> None:
        results[i] = _client_loop(protocol, url, batch, output, barrier, stop)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    stop[0] = began + seconds
    for thread in threads:
        thread.join()
    return Window(batch, time.perf_counter() - began, [v for r in results for v in r])


def measure_cell(
    protocol: str,
    url: str,
    output: str,
    local: InProcess,
    clients: int,
    seconds: float,
    rounds: int,
) -> Cell:
    """Alternate in-process and Triton windows, so load from other tenants hits both alike."""
    ours: list[Window] = []
    base: list[Window] = []
    for _ in range(rounds):
        base.append(local.window(seconds / rounds))
        window = triton_window(protocol, url, local.batch, output, clients, seconds / rounds)
        ours.append(window)
    tput, p50, p99, requests = _figures(ours)
    base_tput, _, base_p99, _ = _figures(base)
    return Cell(
        path="Triton gRPC" if protocol == "grpc" else "Triton HTTP binary",
        batch=local.batch,
        clients=clients,
        seconds=round(sum(w.elapsed for w in ours), 1),
        requests=requests,
        throughput=round(tput, 2),
        p50_ms=round(p50, 1),
        p99_ms=round(p99, 1),
        inprocess_throughput=round(base_tput, 2),
        inprocess_p99_ms=round(base_p99, 1),
        ratio=round(tput / base_tput, 3),
    )


def run(
    store: Path, workdir: Path, seconds: float, clients: int, rounds: int, instances: int
) -> dict[str, Any]:
    """Build (or hit) the engine, measure every cell, return the JSON document."""
    from modelops_builder.pipeline import build
    from modelops_builder.triton_local import running_triton
    from modelops_builder.tritonconfig import ServingOptions
    from modelops_cli.dev import assemble_repository

    source = workdir / "resnet18.pt"
    sha256 = save_torchscript(source)
    result = build(
        build_request(source, sha256, store, "fp32", serving_backend="python"), local_source=True
    )
    manifest, entry = result.manifest, result.entry
    onnx_path = manifest.version_dir(entry) / manifest.model_file
    output = manifest.outputs[0].name
    options = ServingOptions(
        max_queue_delay_microseconds=QUEUE_DELAY_US,
        instances=instances,
        gpu=False,
        backend="python",
    )
    repo = assemble_repository(manifest, entry, MODEL, options, workdir / "repository")

    cells: list[Cell] = []
    with running_triton(repo) as server:
        for batch in BATCHES:
            local = InProcess(onnx_path, batch)
            # Batch 1 needs at least max-batch clients to fill Triton's dynamic batches.
            n = max(clients, manifest.max_batch_size) if batch == 1 else clients
            for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
                cell = measure_cell(protocol, url, output, local, n, seconds, rounds)
                cells.append(cell)
                print(f"{cell.path} batch {batch}: {cell.ratio}x", file=sys.stderr)
    return {
        "model": "ResNet-18 layout, random weights, fp32 ONNX Runtime engine, 3x224x224",
        "machine": machine(),
        "engine_key": manifest.key,
        "max_batch_size": manifest.max_batch_size,
        "max_queue_delay_us": QUEUE_DELAY_US,
        "instances": instances,
        "ort_threads_env": os.environ.get("MODELOPS_ORT_THREADS"),
        "method": f"{rounds} alternating rounds per cell of in-process and Triton windows",
        "cells": [asdict(c) for c in cells],
    }


def markdown(data: dict[str, Any]) -> str:
    """One row per cell: Triton and in-process samples/s, their ratio, latencies."""
    lines = [
        "| path | batch | clients | samples/s | in-process samples/s | ratio | p50 ms | p99 ms "
        "| in-process p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in data["cells"]:
        lines.append(
            f"| {c['path']} | {c['batch']} | {c['clients']} | {c['throughput']:.1f} "
            f"| {c['inprocess_throughput']:.1f} | {c['ratio']:.2f}x | {c['p50_ms']:.1f} "
            f"| {c['p99_ms']:.1f} | {c['inprocess_p99_ms']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per cell (default 20)")
    parser.add_argument("--clients", type=int, default=4, help="client threads at batch 8")
    parser.add_argument("--instances", type=int, default=1, help="Triton model instances")
    parser.add_argument("--rounds", type=int, default=4, help="alternations per cell")
    parser.add_argument("--store", type=Path, help="engine store (default: a fresh temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelops-bench-serving-") as tmp:
        store = (args.store or Path(tmp) / "store").resolve()
        store.mkdir(parents=True, exist_ok=True)
        data = run(store, Path(tmp), args.seconds, args.clients, args.rounds, args.instances)
    print(markdown(data))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
