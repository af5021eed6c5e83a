"""int8 in the cluster, as rendered: the source Job sends the build's data sets with their own
credentials and claims; the build Job reads them from the engine server only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelops_contract import integrity
from modelops_contract.credentials import dataset_environ
from modelops_contract.request import BuildRequest
from modelops_contract.staging import StageRequest
from modelops_operator.render.job import render_build_job
from modelops_operator.render.source_job import render_source_job
from tests.support.render_cases import KEY, UID, make_md
from tests.unit.test_render_jobs import KEYS, PVC, containers, pod

CAL, HELD = "ca" * 32, "de" * 32
INT8 = {
    "engine": "onnxruntime",
    "precision": "int8",
    "calibration": {
        "source": {"uri": "s3://sets/cal.npz", "sha256": CAL, "credentialsSecret": "sets-reader"}
    },
}
VALIDATION = {"source": {"uri": "pvc://held-out/held.npz", "sha256": HELD}, "minAccuracy": 0.9}


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _stage(job: dict[str, Any]) -> tuple[StageRequest, dict[str, Any]]:
    (container,) = pod(job)["containers"]
    return StageRequest.model_validate_json(container["args"][2]), container


def test_the_source_job_of_a_build_sends_both_sets_with_their_own_tokens() -> None:
    md = make_md(build=INT8, validation=VALIDATION)
    request, container = _stage(render_source_job(md, KEY, PVC, keep=True, now=NOW))
    assert [(d.source_uri, d.sha256) for d in request.datasets] == [
        ("s3://sets/cal.npz", CAL),
        ("pvc://held-out/held.npz", HELD),
    ]
    transfer = KEYS["transfer_key"].encode()
    for data in request.datasets:
        scope = integrity.source_put_scope(
            data.sha256,
            UID,
            "ml",
            keep=True,
            max_bytes=data.max_download_bytes,
            expires=request.expires,
        )
        assert integrity.token_valid(transfer, scope, data.token)
    env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
    # The model's Secret under MODELOPS_SOURCE_*, the calibration set's under MODELOPS_DATA0_*.
    assert env["MODELOPS_SOURCE_AWS_ACCESS_KEY_ID"]["name"] == "s3-reader"
    assert env["MODELOPS_DATA0_AWS_ACCESS_KEY_ID"] == {
        "name": "sets-reader",
        "key": "AWS_ACCESS_KEY_ID",
        "optional": True,
    }
    assert not any(name.startswith("MODELOPS_DATA1_") for name in env)  # pvc: no Secret
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod(render_source_job(md, KEY, PVC, keep=True, now=NOW))["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"held-out"}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/mnt/pvc/held-out" in mounts


def test_a_store_hit_proves_model_access_only() -> None:
    md = make_md(build=INT8, validation=VALIDATION)
    request, container = _stage(render_source_job(md, KEY, PVC, keep=False, now=NOW))
    assert request.datasets == []
    assert not any(e["name"].startswith("MODELOPS_DATA") for e in container["env"])


def test_a_labelled_set_of_an_fp32_build_is_not_sent() -> None:
    md = make_md(build={"engine": "onnxruntime"}, validation=VALIDATION)
    request, _ = _stage(render_source_job(md, KEY, PVC, keep=True, now=NOW))
    assert request.datasets == []


def test_the_build_job_reads_the_sets_from_the_engine_server_only() -> None:
    md = make_md(build=INT8, validation=VALIDATION)
    job = render_build_job(md, KEY, PVC)
    build = containers(job)["build"]
    request = BuildRequest.model_validate_json(build["args"][1])
    assert request.calibration is not None
    calibration = request.calibration.data
    assert calibration is not None
    assert calibration.staged_source is not None
    assert calibration.staged_source.url.endswith(f"/sources/{CAL}?owner={UID}")
    assert request.labelled_set is not None
    assert request.labelled_set.staged_source is not None
    transfer = KEYS["transfer_key"].encode()
    for data in (calibration, request.labelled_set):
        assert data.staged_source is not None
        scope = integrity.source_get_scope(data.sha256, UID)
        assert integrity.token_valid(transfer, scope, data.staged_source.token)
    # No tenant credential and no tenant claim reach the build Job.
    assert not any(
        e["name"].startswith("MODELOPS_") and "SOURCE" in e["name"] for e in build["env"]
    )
    claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in pod(job)["volumes"]}
    assert "held-out" not in claims


def test_each_set_is_fetched_with_its_own_credentials_only() -> None:
    environ = {
        "MODELOPS_SOURCE_AWS_ACCESS_KEY_ID": "model-key",
        "MODELOPS_DATA0_AWS_ACCESS_KEY_ID": "set-key",
        "MODELOPS_DATA1_HTTP_AUTHORIZATION": "Bearer other",
        "PATH": "/usr/bin",
    }
    assert dataset_environ(environ, 0) == {
        "MODELOPS_SOURCE_AWS_ACCESS_KEY_ID": "set-key",
        "PATH": "/usr/bin",
    }
    assert dataset_environ(environ, 1) == {
        "MODELOPS_SOURCE_HTTP_AUTHORIZATION": "Bearer other",
        "PATH": "/usr/bin",
    }
    assert dataset_environ(environ, 2) == {"PATH": "/usr/bin"}


def test_modelops_dev_shows_int8_against_fp32() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from modelops_cli.dev_display import figures_table
    from modelops_contract.quantization import (
        BaselineFigures,
        BaselineShape,
        QuantizationReport,
    )
    from modelops_contract.request import AccuracyReport

    accuracy = AccuracyReport(
        max_abs_error=0.05,
        max_rel_error=0.1,
        metric="agreement",
        samples=200,
        agreement=0.995,
        min_agreement=0.99,
        accuracy=0.93,
        baseline_accuracy=0.935,
        max_accuracy_drop=0.01,
    )
    manifest = SimpleNamespace(
        key=KEY,
        engine="onnxruntime",
        precision="int8",
        opt_batch_size=8,
        shapes=[],
        accuracy=accuracy,
        quantization=QuantizationReport(
            method="minmax",
            calibration="builder",
            samples=128,
            quantized_nodes=21,
            kept_float=["/head/Gemm (Gemm)"],
            warning="calibrated on the builder's random inputs",
        ),
        baseline=BaselineFigures(
            runtime="onnxruntime fp32 (CPUExecutionProvider)",
            engine_bytes=3 * 1024**2,
            baseline_bytes=12 * 1024**2,
            size_ratio=0.25,
            shapes=[
                BaselineShape(
                    shape="opt", batch=8, p50_ms=4.0, throughput=2000.0, throughput_ratio=3.5
                )
            ],
        ),
    )
    summary = SimpleNamespace(accuracy=accuracy, latency_ms=None, throughput=7000.0)
    console = Console(record=True, width=200)
    console.print(
        figures_table(SimpleNamespace(summary=summary, manifest=manifest, cached=False), 1.0, 2.0)
    )
    rows = {
        cells[1].strip(): cells[2].strip()
        for line in console.export_text(clear=False).splitlines()
        if len(cells := line.split("│")) == 4
    }
    assert rows["agreement with fp32"] == "99.50% of 200 (min 99.00%)"
    assert rows["accuracy (labels)"] == "93.00% vs fp32 93.50% (max drop 1.00%)"
    text = console.export_text()
    assert "kept in float: /head/Gemm (Gemm)" in text
    assert "3,072 KiB vs 12,288 KiB (0.25x)" in text
    assert "throughput 3.50x" in text
    assert "random inputs" in text


def test_the_source_step_of_a_build_needs_every_data_sets_own_receipt() -> None:
    from modelops_contract.staging import StageSummary
    from modelops_operator.decide.source import source_proof

    md = make_md(build=INT8, validation=VALIDATION)
    transfer = KEYS["transfer_key"].encode()

    def receipt(sha: str, uid: str = UID) -> str:
        return integrity.token(transfer, integrity.receipt_scope(sha, uid, kept=True))

    model = md.spec.model.source.sha256
    whole = StageSummary(
        ok=True,
        sha256=model,
        receipt=receipt(model),
        dataset_receipts={CAL: receipt(CAL), HELD: receipt(HELD)},
    )
    assert source_proof(md, whole, PVC, True, "t") is not None
    for broken in (
        {CAL: receipt(CAL)},  # the labelled set never arrived
        {CAL: receipt(CAL), HELD: receipt(CAL)},  # another file's receipt
        {CAL: receipt(CAL), HELD: receipt(HELD, "another-uid")},  # another tenant's
    ):
        summary = whole.model_copy(update={"dataset_receipts": broken})
        assert source_proof(md, summary, PVC, True, "t") is None
    # A store hit proves model access only: no set needed.
    seen = integrity.token(transfer, integrity.receipt_scope(model, UID, kept=False))
    hit = StageSummary(ok=True, sha256=model, receipt=seen)
    assert source_proof(md, hit, PVC, False, "t") is not None


def test_status_shows_the_int8_figures_and_the_random_calibration_warning() -> None:
    from modelops_contract.quantization import BaselineFigures, BaselineShape, QuantizationReport
    from modelops_contract.request import AccuracyReport, BuildSummary
    from modelops_operator.api import EngineStatus
    from modelops_operator.decide.build_results import engine_from_summary

    kept = [f"/layers.{i}/LayerNorm (LayerNormalization)" for i in range(12)]
    summary = BuildSummary(
        ok=True,
        key="sha256:" + "a" * 64,
        precision="int8",
        accuracy=AccuracyReport(
            max_abs_error=0.2, max_rel_error=0.3, metric="agreement", agreement=0.995, samples=128
        ),
        quantization=QuantizationReport(
            method="minmax",
            calibration="builder",
            samples=128,
            quantized_nodes=40,
            kept_float=kept,
            warning="calibrated on the builder's random inputs: random inputs calibrate poorly",
        ),
        baseline=BaselineFigures(
            runtime="onnxruntime fp32 (CPUExecutionProvider)",
            engine_bytes=25,
            baseline_bytes=100,
            size_ratio=0.25,
            shapes=[
                BaselineShape(
                    shape="opt", batch=8, p50_ms=4.0, throughput=2.0e3, throughput_ratio=3.1
                )
            ],
        ),
    )
    status = engine_from_summary(summary)
    wire = EngineStatus.model_validate(status.to_wire())  # what the status subresource keeps
    assert wire.accuracy is not None
    assert (wire.accuracy.metric, wire.accuracy.agreement) == ("agreement", 0.995)
    assert wire.quantization is not None
    assert wire.quantization.warning is not None
    assert "random inputs calibrate poorly" in wire.quantization.warning
    assert wire.quantization.kept_float is not None
    assert len(wire.quantization.kept_float) == 8
    assert wire.quantization.kept_float[-1] == "... 5 more (engine.json)"
    assert wire.baseline is not None
    assert (wire.baseline.size_ratio, wire.baseline.throughput_ratio) == (0.25, 3.1)
