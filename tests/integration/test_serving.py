"""Engines built by pipeline.build, served by ONE real Triton (python backend + ONNX Runtime).

Four tiny torch models (MLP, CNN with BatchNorm, two inputs/two outputs, int64 token ids) are
exported to ONNX and built into a temporary store as fp32 ONNX Runtime engines, plus the CNN in
fp16. All are served from one repository by one tritonserver for the module, queried over binary
HTTP and gRPC, and compared with torch. Metrics show dynamic batching under concurrent load, and a
failing request inside a dynamic batch gets its own error while its batch-mates succeed.
"""

from __future__ import annotations

import re
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops_builder import triton_local
from tests.support.torch_models import VOCAB, TinyModel, export_onnx, tiny_models

pytestmark = pytest.mark.triton

# (served name, tiny model, precision, atol, rtol) against the torch fp32 reference.
ENGINES = [
    ("mlp", "mlp", "fp32", 1e-5, 1e-4),
    ("cnn", "cnn", "fp32", 1e-4, 1e-4),
    ("twoio", "twoio", "fp32", 1e-5, 1e-4),
    ("tokens", "tokens", "fp32", 1e-5, 1e-4),
    ("cnn_fp16", "cnn", "fp16", 2e-2, 2e-2),
    # The int8 gate's maxAbs defaults (the build's own gate judged it by agreement).
    ("cnn_int8", "cnn", "int8", 1e-1, 1e-1),
]
QUEUE_DELAY_US = 20_000  # long enough that concurrent requests reliably share a batch


@dataclass
class Served:
    """One engine in the shared Triton."""

    name: str
    model: TinyModel
    manifest: Any
    entry: Path
    atol: float
    rtol: float


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    from modelops_builder.pipeline import build
    from modelops_contract.request import BuildRequest

    root = tmp_path_factory.mktemp("serving")
    models = tiny_models()
    served: dict[str, Served] = {}
    for name, model_name, precision, atol, rtol in ENGINES:
        model = models[model_name]
        source = root / "models" / f"{model_name}.onnx"
        sha256 = export_onnx(model, source) if not source.exists() else _sha(source)
        request = BuildRequest(
            source_uri=source.as_uri(),
            sha256=sha256,
            format="onnx",
            engine="onnxruntime",
            precision=precision,  # type: ignore[arg-type]
            max_batch_size=8,
            opt_batch_size=4,
            store=str(root / "store"),
            model_name=name,
            serving_backend="python",
        )
        result = build(request, local_source=True)
        served[name] = Served(name, model, result.manifest, result.entry, atol, rtol)
    return served


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def server(engines: dict[str, Served], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from modelops_cli.dev import assemble_repository
    from modelops_contract.tritonconfig import ServingOptions

    repo = tmp_path_factory.mktemp("repository")
    options = ServingOptions(max_queue_delay_microseconds=QUEUE_DELAY_US, gpu=False)
    for item in engines.values():
        assemble_repository(item.manifest, item.entry, item.name, options, repo)
    # A tritonserver that does not start (or a model it cannot load) fails the test.
    triton = triton_local.start_triton(repo)
    try:
        yield triton
    finally:
        triton.stop()


def infer(protocol: str, url: str, item: Served, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """One inference with binary tensors over `protocol`; the outputs by name."""
    if protocol == "grpc":
        import tritonclient.grpc as mod

        client: Any = mod.InferenceServerClient(url)
    else:
        import tritonclient.http as mod  # type: ignore[no-redef]

        client = mod.InferenceServerClient(url)
    try:
        inputs = []
        for sig in item.manifest.inputs:
            tensor = mod.InferInput(sig.name, list(feeds[sig.name].shape), sig.data_type)
            if protocol == "grpc":
                tensor.set_data_from_numpy(feeds[sig.name])
            else:
                tensor.set_data_from_numpy(feeds[sig.name], binary_data=True)
            inputs.append(tensor)
        if protocol == "grpc":
            outputs = [mod.InferRequestedOutput(o.name) for o in item.manifest.outputs]
        else:
            outputs = [
                mod.InferRequestedOutput(o.name, binary_data=True) for o in item.manifest.outputs
            ]
        result = client.infer(item.name, inputs, outputs=outputs)
        return {o.name: result.as_numpy(o.name) for o in item.manifest.outputs}
    finally:
        client.close()


def _url(server: Any, protocol: str) -> str:
    return str(server.grpc_url if protocol == "grpc" else server.http_url)


def test_store_entry_carries_the_python_backend_model(engines: dict[str, Served]) -> None:
    for item in engines.values():
        version = item.manifest.version_dir(item.entry)
        assert (version / item.manifest.model_file).is_file()
        assert (version / "model.py").is_file(), "pipeline must copy triton_cpu/model.py"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", [e[0] for e in ENGINES])
def test_outputs_match_torch(
    server: Any, engines: dict[str, Served], name: str, protocol: str
) -> None:
    item = engines[name]
    feeds = item.model.sample(batch=3, seed=7)
    got = infer(protocol, _url(server, protocol), item, feeds)
    want = item.model.reference(feeds)
    assert set(got) == set(want)
    for out, value in want.items():
        assert got[out].shape == value.shape
        assert got[out].dtype == np.dtype(
            {"FP32": np.float32, "FP16": np.float16}[_sig(item, out).data_type]
        )
        np.testing.assert_allclose(
            got[out].astype(np.float32), value, atol=item.atol, rtol=item.rtol
        )


def test_int8_engine_answers_as_the_fp32_engine_within_the_gate(
    server: Any, engines: dict[str, Served]
) -> None:
    """Both served by Triton: on held-out inputs the int8 CNN's class is the fp32 CNN's on at
    least the gate's 99 %, and every logit is within the int8 maxAbs defaults."""
    from modelops_builder.task_gate import DEFAULT_MIN_AGREEMENT, agreement

    fp32, int8 = engines["cnn"], engines["cnn_int8"]
    assert int8.manifest.precision == "int8"
    assert int8.manifest.accuracy.metric == "agreement"
    url = _url(server, "grpc")
    want, got = [], []
    for seed in range(8):
        feeds = fp32.model.sample(batch=8, seed=100 + seed)
        want.append(infer("grpc", url, fp32, feeds)["logits"])
        got.append(infer("grpc", url, int8, feeds)["logits"])
    reference, quantized = np.concatenate(want), np.concatenate(got)
    share, _ = agreement(reference, quantized)
    assert share >= DEFAULT_MIN_AGREEMENT
    np.testing.assert_allclose(quantized, reference, atol=int8.atol, rtol=int8.rtol)
    assert np.abs(quantized - reference).max() > 0  # really another engine, not the fp32 one


def _sig(item: Served, output: str) -> Any:
    return next(o for o in item.manifest.outputs if o.name == output)


def _metric(server: Any, name: str, model: str) -> float:
    req = urllib.request.Request(server.metrics_url, headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(rf'^{name}{{[^}}]*model="{model}"[^}}]*}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {model} not in metrics"
    return float(match.group(1))


def _concurrent(server: Any, item: Served, batches: list[dict[str, np.ndarray]]) -> list[Any]:
    """Send all requests at once over gRPC (one thread each); results or exceptions, in order."""
    results: list[Any] = [None] * len(batches)
    barrier = threading.Barrier(len(batches))

    def send(i: int) -> None:
        barrier.wait()
        try:
            results[i] = infer("grpc", server.grpc_url, item, batches[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_dynamic_batching_merges_concurrent_requests(
    server: Any, engines: dict[str, Served]
) -> None:
    item = engines["mlp"]
    before = {
        m: _metric(server, m, "mlp") for m in ("nv_inference_count", "nv_inference_exec_count")
    }
    batches = [item.model.sample(batch=1, seed=i) for i in range(16)]
    results = _concurrent(server, item, batches)
    for feeds, got in zip(batches, results, strict=True):
        assert not isinstance(got, Exception), got
        np.testing.assert_allclose(got["y"], item.model.reference(feeds)["y"], atol=1e-5, rtol=1e-4)
    inferences = _metric(server, "nv_inference_count", "mlp") - before["nv_inference_count"]
    executions = (
        _metric(server, "nv_inference_exec_count", "mlp") - before["nv_inference_exec_count"]
    )
    assert inferences == 16
    assert executions < inferences, f"{executions} executions for {inferences} inferences"


def test_failing_request_gets_its_own_error_and_batch_mates_succeed(
    server: Any, engines: dict[str, Served]
) -> None:
    item = engines["tokens"]
    batches = [item.model.sample(batch=2, seed=i) for i in range(6)]
    bad = {2, 5}
    for i in bad:
        batches[i]["ids"][0, 0] = VOCAB + 100  # outside the embedding: ONNX Runtime fails
    results = _concurrent(server, item, batches)
    for i, (feeds, got) in enumerate(zip(batches, results, strict=True)):
        if i in bad:
            assert isinstance(got, Exception)
            assert "inference failed" in str(got)
        else:
            assert not isinstance(got, Exception), got
            want = item.model.reference(feeds)["scores"]
            np.testing.assert_allclose(got["scores"], want, atol=1e-5, rtol=1e-4)
    # The stub survived: the same model still answers.
    feeds = item.model.sample(batch=1, seed=99)
    got_after = infer("http", server.http_url, item, feeds)
    np.testing.assert_allclose(
        got_after["scores"], item.model.reference(feeds)["scores"], atol=1e-5, rtol=1e-4
    )


def test_a_request_that_fails_alone_counts_as_a_failure_in_metrics(
    server: Any, engines: dict[str, Served]
) -> None:
    # Canary analysis reads nv_inference_request_failure: a model that fails must show there.
    item = engines["tokens"]
    before = _failures(server, "tokens")
    feeds = item.model.sample(batch=1, seed=7)
    feeds["ids"][0, 0] = VOCAB + 100
    with pytest.raises(Exception, match="inference failed"):
        infer("http", server.http_url, item, feeds)
    assert _failures(server, "tokens") == before + 1


def _failures(server: Any, model: str) -> float:
    """nv_inference_request_failure summed over its reason label."""
    req = urllib.request.Request(server.metrics_url, headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    pattern = rf'^nv_inference_request_failure{{[^}}]*model="{model}"[^}}]*}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def test_wrong_shape_is_rejected_without_breaking_the_model(
    server: Any, engines: dict[str, Served]
) -> None:
    from tritonclient.utils import InferenceServerException

    item = engines["mlp"]
    with pytest.raises(InferenceServerException):
        infer("grpc", server.grpc_url, item, {"x": np.zeros((1, 15), dtype=np.float32)})
    feeds = item.model.sample(batch=2, seed=3)
    got = infer("grpc", server.grpc_url, item, feeds)
    np.testing.assert_allclose(got["y"], item.model.reference(feeds)["y"], atol=1e-5, rtol=1e-4)
