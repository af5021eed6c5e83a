"""The source Job (tenant's namespace) and the build Job (operator's namespace), field by field:
who gets which credential, which volume, which token."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from modelops_contract import integrity
from modelops_contract.credentials import SOURCE_SECRET_KEYS
from modelops_contract.request import BuildRequest
from modelops_contract.staging import StageRequest
from modelops_operator.render.job import render_build_job
from modelops_operator.render.source_job import render_source_job
from modelops_operator.settings import Settings
from tests.support.render_cases import KEY, UID, make_md

KEYS = {
    "store_mac_key": "test-store-mac-key-0123456789abcdef0123",
    "transfer_key": "test-transfer-key-0123456789abcdef01234",
}
PVC = Settings(store_pvc="engines", operator_namespace="mo-system", **KEYS)
S3 = Settings(store_pvc=None, store_uri="s3://engines/store", store_secret="store-creds", **KEYS)


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def containers(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod(job)
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


# --- the source Job: the tenant's namespace, the tenant's credentials, nothing of the store -----
def test_source_job_identity_and_owner() -> None:
    job = render_source_job(make_md(), KEY, PVC, keep=True, now=NOW)
    meta = job["metadata"]
    assert (meta["name"], meta["namespace"]) == ("bert-source-ababababab", "ml")
    assert meta["ownerReferences"][0]["uid"] == UID
    assert meta["annotations"]["modelops.dev/keep"] == "true"
    assert meta["labels"]["modelops.dev/deployment"] == "bert"
    # Source pods never match the Service or the /scale selector.
    assert "modelops.dev/deployment" not in job["spec"]["template"]["metadata"]["labels"]


def test_source_job_holds_the_tenants_credentials_and_one_token() -> None:
    job = render_source_job(make_md(), KEY, PVC, keep=False, now=NOW)
    (container,) = pod(job)["containers"]
    assert container["args"][:2] == ["stage", "--request"]
    request = StageRequest.model_validate_json(container["args"][2])
    assert (request.sha256, request.owner, request.keep) == ("cd" * 32, UID, False)
    assert request.server == PVC.store_server
    transfer = KEYS["transfer_key"].encode()
    scope = integrity.source_put_scope(
        "cd" * 32,
        UID,
        "ml",
        keep=False,
        max_bytes=request.max_download_bytes,
        expires=request.expires,
    )
    assert integrity.token_valid(transfer, scope, request.token)
    # the token expires: after the longest a source Job may wait and run, within 10 minutes
    lifetime = PVC.stuck_seconds + PVC.build_deadline_seconds
    assert NOW.timestamp() + lifetime < request.expires <= NOW.timestamp() + lifetime + 1200
    # The token opens one door: sending this source for this ModelDeployment, nothing else.
    assert not integrity.token_valid(
        transfer, integrity.entry_scope(KEY.removeprefix("sha256:")), request.token
    )
    refs = [e for e in container["env"] if "valueFrom" in e]
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in refs} == {
        f"MODELOPS_SOURCE_{k}": k for k in SOURCE_SECRET_KEYS
    }
    assert all(e["valueFrom"]["secretKeyRef"]["name"] == "s3-reader" for e in refs)
    assert "envFrom" not in container


def test_source_job_mounts_a_pvc_source_read_only() -> None:
    md = make_md(model={"source": {"uri": "pvc://models/bert/m.onnx", "sha256": "cd" * 32}})
    spec = pod(render_source_job(md, KEY, PVC, keep=True, now=NOW))
    assert {
        "name": "source",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in spec["volumes"]
    mounts = spec["containers"][0]["volumeMounts"]
    assert {"name": "source", "mountPath": "/mnt/pvc/models", "readOnly": True} in mounts


# --- the build Job: the operator's namespace, no user credential, the store only to publish ----
def test_build_job_lives_in_the_operators_namespace_and_names_its_owner() -> None:
    job = render_build_job(make_md(), KEY, PVC)
    meta = job["metadata"]
    assert meta["namespace"] == "mo-system"
    assert meta["name"].startswith("ml-bert-")
    assert meta["name"].endswith("-build-ababababab")
    # No ownerReference can cross namespaces: labels and annotations name the owner instead.
    assert "ownerReferences" not in meta
    assert meta["labels"]["modelops.dev/deployment"] == "bert"
    assert meta["labels"]["modelops.dev/owner-namespace"] == "ml"
    assert meta["annotations"]["modelops.dev/owner-uid"] == UID
    assert meta["annotations"]["modelops.dev/owner-name"] == "bert"
    assert meta["annotations"]["modelops.dev/generation"] == "4"
    assert job["spec"]["ttlSecondsAfterFinished"] == PVC.build_ttl_seconds
    assert job["spec"]["backoffLimit"] == PVC.build_backoff_limit
    assert "modelops.dev/deployment" not in job["spec"]["template"]["metadata"]["labels"]


def test_build_step_sees_neither_the_store_nor_any_credential() -> None:
    job = render_build_job(make_md(), KEY, PVC)
    build = containers(job)["build"]
    assert build["args"][0] == "--request"
    assert "--into" in build["args"]
    assert all(not e.get("valueFrom") for e in build["env"]), "no Secret at all"
    assert "envFrom" not in build
    mounted = {m["name"] for m in build["volumeMounts"]}
    assert "store" not in mounted
    request = BuildRequest.model_validate_json(build["args"][1])
    assert request.engine_key == KEY
    assert request.staged_source is not None
    assert request.staged_source.url.endswith("/sources/" + "cd" * 32 + f"?owner={UID}")
    transfer = KEYS["transfer_key"].encode()
    scope = integrity.source_get_scope("cd" * 32, UID)
    assert integrity.token_valid(transfer, scope, request.staged_source.token)
    assert "s3-reader" not in json.dumps(job), "the tenant's Secret never reaches the build"
    assert build["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod(job)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def test_publish_step_alone_holds_the_store_and_the_mac_key() -> None:
    job = render_build_job(make_md(), KEY, PVC)
    publish = containers(job)["publish"]
    assert publish["args"][0] == "publish"
    assert publish["args"][publish["args"].index("--from") + 1] == "/var/lib/modelops/output"
    (mac,) = [e for e in publish["env"] if "valueFrom" in e]
    assert mac["name"] == "MODELOPS_STORE_MAC_KEY"
    assert mac["valueFrom"]["secretKeyRef"] == {"name": "modelops-store-key", "key": "mac"}
    mounts = {m["name"]: m for m in publish["volumeMounts"]}
    assert mounts["store"]["mountPath"] == PVC.store_mount_path
    assert mounts["output"]["readOnly"] is True, "it reads the build's output, never writes it"
    assert {"name": "store", "persistentVolumeClaim": {"claimName": "engines"}} in pod(job)[
        "volumes"
    ]
    # Only the TensorRT timing cache step also sees the store, read-only, and no user file.
    timing = containers(job)["timing-cache"]
    assert {m["name"]: m.get("readOnly") for m in timing["volumeMounts"]} == {
        "store": True,
        "cache": None,
    }


def test_build_job_on_an_s3_store_gives_the_store_secret_to_the_publisher_only() -> None:
    job = render_build_job(make_md(build={"engine": "onnxruntime"}), KEY, S3)
    by_name = containers(job)
    assert set(by_name) == {"build", "publish"}
    assert by_name["publish"]["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    assert "envFrom" not in by_name["build"]
    assert "nodeSelector" not in pod(job)
    assert all("persistentVolumeClaim" not in v for v in pod(job)["volumes"])
    request = BuildRequest.model_validate_json(by_name["publish"]["args"][2])
    assert request.store == "s3://engines/store"


def test_a_refused_entry_is_named_by_the_replacing_build() -> None:
    job = render_build_job(make_md(), KEY, PVC, replaces="ef" * 32)
    assert job["metadata"]["annotations"]["modelops.dev/replaces"] == "ef" * 32


def test_the_build_jobs_scratch_and_output_are_bounded() -> None:
    """Two copies of the largest download plus overhead in /tmp, the engine in its own folder:
    evicted before it fills the node."""
    job = render_build_job(make_md(), KEY, PVC)
    spec = pod(job)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "41Gi"}
    assert volumes["output"]["emptyDir"] == {"sizeLimit": "21Gi"}
    build = containers(job)["build"]
    assert build["resources"]["requests"]["ephemeral-storage"] == "62Gi"
    assert build["resources"]["limits"]["ephemeral-storage"] == "62Gi"


@pytest.mark.parametrize("engine", ["onnxruntime", "tensorrt"])
def test_jobs_are_idempotent(engine: str) -> None:
    gpu = {"gpu": {"product": "NVIDIA-H100-80GB-HBM3"}} if engine == "tensorrt" else {}
    md = make_md(build={"engine": engine, **gpu})
    assert render_build_job(md, KEY, PVC) == render_build_job(md, KEY, PVC)
    source = render_source_job(md, KEY, PVC, keep=True, now=NOW)
    assert source == render_source_job(md, KEY, PVC, keep=True, now=NOW)
