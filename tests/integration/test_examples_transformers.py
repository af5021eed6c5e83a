"""The transformer examples end to end, as `modelops dev` runs them: built from their
ExportedPrograms in fp32 and fp16 (the gate passes with the default tolerances), then served by
the real Triton, which answers at sequence lengths 1, opt and max exactly as torch does. The same
Triton serves a multi-file model (graph + external data) from its store entry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops_builder import triton_local
from modelops_builder.pipeline import BuildResult, build
from modelops_builder.torch_archive import check_exported_program
from modelops_builder.torch_load import load_program
from modelops_cli.dev import (
    assemble_repository,
    dev_serving_options,
    load_deployment,
    resolve_source,
    to_build_request,
)
from modelops_contract.enums import ServingBackend
from modelops_contract.tritonconfig import ServingOptions
from tests.support.archives import MODEL as CNN
from tests.support.archives import external_model, tar_folder
from tests.support.builder_cases import make_request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ("bert-encoder", "gpt-decoder")
VOCAB = 512


def _build(name: str, store: Path, **changes: Any) -> tuple[Any, BuildResult]:
    deployment = load_deployment(EXAMPLES / f"{name}.yaml")
    source = resolve_source(deployment.spec.model.source.uri, deployment.base_dir)
    request, _ = to_build_request(deployment, source, store)
    request = request.model_copy(update={"profile_seconds": 0.05, **changes})
    return deployment, build(request, local_source=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, BuildResult]]:
    """Both examples built in fp32, as the dev loop builds them."""
    store = tmp_path_factory.mktemp("store")
    return {name: _build(name, store) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_example_builds_in_fp16_and_passes_the_default_gate(name: str, tmp_path: Path) -> None:
    _, result = _build(name, tmp_path / "store", precision="fp16")
    accuracy = result.manifest.accuracy
    assert accuracy is not None
    assert accuracy.passed
    assert (accuracy.atol, accuracy.rtol) == (1e-2, 1e-2)  # the fp16 defaults
    assert [f.shape for f in result.manifest.shapes] == ["min", "opt", "max"]


@pytest.fixture(scope="module")
def multi_file(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The tiny CNN built from a .tar.gz of its graph and external-data files."""
    root = tmp_path_factory.mktemp("multi")
    archive = root / "cnn.tar.gz"
    sha = tar_folder(external_model(root), archive)
    return build(make_request(archive, sha, root / "store", modelName="cnn"), local_source=True)


@pytest.fixture(scope="module")
def triton(
    built: dict[str, tuple[Any, BuildResult]],
    multi_file: BuildResult,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """One real Triton serving both examples and the multi-file model (CPU, python backend)."""
    repo = tmp_path_factory.mktemp("repository")
    for name, (deployment, result) in built.items():
        options = dev_serving_options(deployment.spec)
        assemble_repository(result.manifest, result.entry, name, options, repo)
    options = ServingOptions(gpu=False, backend=ServingBackend.PYTHON)
    assemble_repository(multi_file.manifest, multi_file.entry, "cnn", options, repo)
    assert (repo / "cnn" / "1" / "model.onnx.data").is_file()
    # A tritonserver that does not start (or a model it cannot load) fails the test.
    server = triton_local.start_triton(repo)
    try:
        yield server
    finally:
        server.stop()


def _feeds(inputs: list[str], batch: int, seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seq)
    feeds = {"input_ids": rng.integers(1, VOCAB, size=(batch, seq), dtype=np.int64)}
    if "attention_mask" in inputs:
        mask = np.ones((batch, seq), dtype=np.int64)
        mask[1, seq // 2 + 1 :] = 0  # the second sequence is padded
        feeds["attention_mask"] = mask
    return feeds


@pytest.mark.triton
@pytest.mark.parametrize("name", NAMES)
def test_triton_answers_at_sequence_lengths_1_opt_and_max(
    name: str, built: dict[str, tuple[Any, BuildResult]], triton: Any
) -> None:
    import torch
    import tritonclient.http as httpclient

    deployment, result = built[name]
    manifest = result.manifest
    program = load_program(check_exported_program(resolve_source(
        deployment.spec.model.source.uri, deployment.base_dir
    ))).module()  # fmt: skip
    inputs = [s.name for s in manifest.inputs]
    lengths = [f.dims["input_ids"][0] for f in manifest.shapes]  # min, opt, max
    assert lengths[0] == 1
    assert len(set(lengths)) == 3
    client = httpclient.InferenceServerClient(triton.http_url)
    try:
        for seq in lengths:
            feeds = _feeds(inputs, 2, seq)
            tensors = []
            for key, value in feeds.items():
                tensor = httpclient.InferInput(key, list(value.shape), "INT64")
                tensor.set_data_from_numpy(value, binary_data=True)
                tensors.append(tensor)
            answer = client.infer(name, tensors, headers={"Connection": "close"})
            logits = answer.as_numpy("logits")
            with torch.no_grad():
                want = program(*(torch.from_numpy(feeds[k]) for k in inputs)).numpy()
            np.testing.assert_allclose(logits, want, atol=1e-4, rtol=1e-4, err_msg=f"seq {seq}")
    finally:
        client.close()


@pytest.mark.triton
def test_triton_serves_a_multi_file_model(multi_file: BuildResult, triton: Any) -> None:
    import tritonclient.http as httpclient

    feeds = CNN.sample(2, seed=4)
    client = httpclient.InferenceServerClient(triton.http_url)
    try:
        tensor = httpclient.InferInput("image", list(feeds["image"].shape), "FP32")
        tensor.set_data_from_numpy(feeds["image"], binary_data=True)
        answer = client.infer("cnn", [tensor], headers={"Connection": "close"})
    finally:
        client.close()
    want = CNN.reference(feeds)["logits"]
    np.testing.assert_allclose(answer.as_numpy("logits"), want, atol=1e-4, rtol=1e-4)
