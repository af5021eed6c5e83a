"""An int8 cluster build, container by container as rendered: the source Job sends the model AND
the calibration and labelled sets (each with its own receipt) to the engine server; the build
step reads all three from it (no credential, no claim); the publisher seals the int8 entry and
drops the staged files. Real engine server, real tiny model and sets on a claim folder."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelops_contract.request import parse_summary
from modelops_contract.staging import parse_stage_summary
from modelops_operator.api import ModelDeployment
from modelops_operator.decide.source import source_proof
from modelops_operator.render.job import render_build_job
from modelops_operator.render.source_job import render_source_job
from modelops_operator.render.tokens import receipt_kept
from modelops_operator.settings import Settings
from tests.integration.test_store_server import STORE_SECRETS, UID, call
from tests.support.builder_cases import save_model
from tests.support.engine_store import (
    TEST_MAC_KEY,
    TEST_TRANSFER_KEY,
    engine_server_thread,
    get_source,
)
from tests.support.int8_cases import save_set, task, trained_cnn
from tests.support.pod_runner import pod_containers, run_container


def int8_md(model: str, calibration: str, held: str) -> ModelDeployment:
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "cnn", "namespace": "team-a", "uid": UID, "generation": 1},
            "spec": {
                "model": {"source": {"uri": "pvc://models/cnn.onnx", "sha256": model}},
                "build": {
                    "engine": "onnxruntime",
                    "precision": "int8",
                    "maxBatchSize": 4,
                    "calibration": {
                        "source": {"uri": "pvc://models/calibration.npz", "sha256": calibration}
                    },
                },
                "validation": {
                    "source": {"uri": "pvc://models/held.npz", "sha256": held},
                    "minAccuracy": 0.5,
                },
                "serving": {"replicas": 1},
            },
        }
    )


@pytest.fixture(scope="module")
def int8_build(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cluster-int8")
    claim = root / "pvc" / "models"
    claim.mkdir(parents=True)
    path, model_sha = save_model(trained_cnn(), "onnx", claim)
    path.rename(claim / "cnn.onnx")
    images, _ = task(32, seed=2)
    held, labels = task(64, seed=3)
    calibration_sha = save_set(claim / "calibration.npz", image=images)
    held_sha = save_set(claim / "held.npz", image=held, labels=labels)
    with engine_server_thread(root / "store", root / "inbox", max_source_bytes=1 << 24) as url:
        settings = Settings(
            store_pvc="engines",
            store_mount_path="/var/lib/modelops/engines",
            store_server=url,
            store_mac_key=TEST_MAC_KEY,
            transfer_key=TEST_TRANSFER_KEY,
        )
        md = int8_md(model_sha, calibration_sha, held_sha)
        key = "sha256:" + "8e" * 32
        (source,) = pod_containers(
            render_source_job(md, key, settings, keep=True, now=datetime.now(UTC))
        ).values()
        staged = run_container(source, {"tmp": root / "src-tmp", "source": claim}, root)
        containers = pod_containers(render_build_job(md, key, settings))
        volumes = {
            "tmp": root / "tmp",
            "publish-tmp": root / "publish-tmp",
            "output": root / "output",
            "store": root / "store",
        }
        built = run_container(containers["build"], volumes, root, secrets=STORE_SECRETS)
        published = run_container(containers["publish"], volumes, root, secrets=STORE_SECRETS)
        owner = md.metadata.uid or ""
        left = {}
        for sha in (model_sha, calibration_sha, held_sha):
            staged_url, token = get_source(url, sha, owner)
            left[sha] = call(staged_url, token=token)[0]
    return {
        "settings": settings,
        "md": md,
        "sets": (calibration_sha, held_sha),
        "staged": staged,
        "built": built,
        "published": published,
        "left": left,
    }


def test_the_source_job_sends_each_data_set_with_its_own_receipt(
    int8_build: dict[str, Any],
) -> None:
    staged = int8_build["staged"]
    assert staged.returncode == 0, staged.stderr
    summary = parse_stage_summary(staged.message)
    assert summary is not None
    assert summary.dataset_receipts is not None
    settings, md = int8_build["settings"], int8_build["md"]
    for sha in int8_build["sets"]:
        assert receipt_kept(settings, summary.dataset_receipts[sha], sha, UID, True)
    assert source_proof(md, summary, settings, True, "now") is not None
    # Without a data set's receipt the source step is not done: no build Job yet.
    missing = summary.model_copy(update={"dataset_receipts": {}})
    assert source_proof(md, missing, settings, True, "now") is None
    forged = dict.fromkeys(int8_build["sets"], summary.receipt or "")
    assert (
        source_proof(
            md, summary.model_copy(update={"dataset_receipts": forged}), settings, True, "now"
        )
        is None
    )


def test_the_build_reads_the_staged_sets_and_the_entry_is_int8(int8_build: dict[str, Any]) -> None:
    built, published = int8_build["built"], int8_build["published"]
    assert built.returncode == 0, built.stderr
    assert published.returncode == 0, published.stderr
    summary = parse_summary(published.message)
    assert summary is not None
    assert summary.ok, summary
    assert summary.precision == "int8"
    calibration_sha, _held_sha = int8_build["sets"]
    assert summary.quantization is not None
    assert summary.quantization.calibration == f"sha256:{calibration_sha}"
    assert summary.accuracy is not None
    assert summary.accuracy.samples == 64  # judged on the labelled set
    assert summary.accuracy.baseline_accuracy is not None
    assert summary.baseline is not None
    # The publisher dropped the model and both sets from the engine server.
    assert int8_build["left"] == dict.fromkeys(int8_build["left"], 404)
