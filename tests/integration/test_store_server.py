"""The engine server (`modelops-build serve-store`'s application, on loopback) and the cluster
build split in three, each container run with exactly the arguments, environment and volumes
the operator renders: the source Job (tenant's namespace) -> the build step (no store, no
credential) -> the publishing step (store + MAC key) -> a Triton pod's pull (pinned digest,
the entry's token). Real tiny model, real store folder."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops_builder.publish import import_output
from modelops_builder.seal import BUILD_RECORD
from modelops_builder.validate import reference_set
from modelops_contract import integrity
from modelops_contract.manifest import EngineManifest
from modelops_contract.request import parse_summary
from modelops_contract.staging import OWNER_HEADER, parse_stage_summary
from modelops_operator.api import ModelDeployment
from modelops_operator.decide.pod_health import tampered_report
from modelops_operator.k8s.store import EngineStore, FileStore
from modelops_operator.render.job import render_build_job
from modelops_operator.render.revision import PULL_CONTAINER, render_revision
from modelops_operator.render.source_job import render_source_job
from modelops_operator.render.tokens import receipt_kept
from modelops_operator.render.validation_job import validation_request
from modelops_operator.settings import Settings
from tests.support.builder_cases import save_model
from tests.support.engine_store import (
    TEST_MAC_KEY,
    TEST_TRANSFER_KEY,
    engine_server_thread,
    get_source,
    put_source,
)
from tests.support.pod_runner import pod_containers, run_container
from tests.support.torch_models import tiny_models

UID = "0f6c5a5e-1111-2222-3333-444455556666"
TRANSFER = TEST_TRANSFER_KEY.encode()
STORE_SECRETS = {"modelops-store-key": {"mac": TEST_MAC_KEY, "transfer": TEST_TRANSFER_KEY}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The engine server over an empty store folder; (URL, store)."""
    root = tmp_path_factory.mktemp("engine-server")
    with engine_server_thread(root / "store", root / "inbox", max_source_bytes=1 << 24) as url:
        yield url, root / "store"


def call(
    url: str, method: str = "GET", token: str = "", body: bytes | None = None, **headers: str
) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Authorization": f"Bearer {token}", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- sources: content-addressed, tokens, receipts -----------------------------------------------
def test_a_source_is_kept_only_with_its_token_and_its_own_sha256(
    server: tuple[str, Path],
) -> None:
    url, _ = server
    body = os.urandom(4096)
    sha = integrity.sha256_hex(body)
    where, put = put_source(url, sha, UID)
    assert call(where, "PUT", "forged", body, **{OWNER_HEADER: UID})[0] == 403
    _, other = put_source(url, sha, "another-uid")
    assert call(where, "PUT", other, body, **{OWNER_HEADER: UID})[0] == 403
    status, answer = call(where, "PUT", put, body[:-1] + b"x", **{OWNER_HEADER: UID})
    assert status == 400
    assert json.loads(answer)["reason"] == "ChecksumMismatch"
    staged, get = get_source(url, sha, UID)
    assert call(staged, token=get)[0] == 404, "nothing of wrong bytes is kept"
    status, answer = call(where, "PUT", put, body, **{OWNER_HEADER: UID})
    assert status == 200
    receipt = json.loads(answer)
    assert (receipt["sha256"], receipt["bytes"], receipt["kept"]) == (sha, 4096, True)
    kept = integrity.receipt_scope(sha, UID, kept=True)
    assert integrity.token_valid(TRANSFER, kept, receipt["receipt"])
    assert call(staged, token=put)[0] == 403, "a put token reads nothing"
    assert call(staged, token=get) == (200, body)
    assert call(staged, "DELETE", get)[0] == 200
    assert call(staged, token=get)[0] == 404


def test_a_source_only_proving_access_is_hashed_not_kept(server: tuple[str, Path]) -> None:
    url, _ = server
    body = b"private weights"
    sha = integrity.sha256_hex(body)
    where, put = put_source(url, sha, UID, keep=False)
    status, answer = call(where, "PUT", put, body, **{OWNER_HEADER: UID})
    assert status == 200
    seen = json.loads(answer)
    assert seen["kept"] is False
    assert integrity.token_valid(
        TRANSFER, integrity.receipt_scope(sha, UID, kept=False), seen["receipt"]
    )
    assert not integrity.token_valid(
        TRANSFER, integrity.receipt_scope(sha, UID, kept=True), seen["receipt"]
    )
    staged, get = get_source(url, sha, UID)
    assert call(staged, token=get)[0] == 404
    # keep is the token's, not the client's: the same token with keep=1 opens nothing
    status, _ = call(where.replace("keep=0", "keep=1"), "PUT", put, body, **{OWNER_HEADER: UID})
    assert status == 403


def test_the_server_refuses_sources_over_its_limit(server: tuple[str, Path]) -> None:
    url, _ = server
    body = b"\0" * ((1 << 24) + 1)
    sha = integrity.sha256_hex(body)
    where, put = put_source(url, sha, UID)
    status, answer = call(where, "PUT", put, body, **{OWNER_HEADER: UID})
    assert status == 413
    assert json.loads(answer)["reason"] == "SourceTooLarge"


# --- the cluster build, container by container, as rendered --------------------------------------
def tenant_md(sha: str) -> ModelDeployment:
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "mlp", "namespace": "team-a", "uid": UID, "generation": 1},
            "spec": {
                "model": {"source": {"uri": "pvc://models/mlp.onnx", "sha256": sha}},
                "build": {"engine": "onnxruntime", "maxBatchSize": 4},
                "serving": {"replicas": 1},
            },
        }
    )


@pytest.fixture(scope="module")
def cluster_build(
    server: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Source Job, build step and publishing step run as rendered; what they left."""
    url, store = server
    root = tmp_path_factory.mktemp("cluster-build")
    claim = root / "pvc" / "models"
    claim.mkdir(parents=True)
    path, sha = save_model(tiny_models()["mlp"], "onnx", claim)
    path.rename(claim / "mlp.onnx")
    settings = Settings(
        store_pvc="engines",
        store_mount_path="/var/lib/modelops/engines",
        store_server=url,
        store_mac_key=TEST_MAC_KEY,
        transfer_key=TEST_TRANSFER_KEY,
    )
    md = tenant_md(sha)
    key = "sha256:" + "5e" * 32
    source_job = render_source_job(md, key, settings, keep=True, now=datetime.now(UTC))
    (source,) = pod_containers(source_job).values()
    staged = run_container(source, {"tmp": root / "src-tmp", "source": claim}, root)
    build_job = render_build_job(md, key, settings)
    containers = pod_containers(build_job)
    volumes = {
        "tmp": root / "tmp",
        "publish-tmp": root / "publish-tmp",
        "output": root / "output",
        "store": store,
    }
    built = run_container(containers["build"], volumes, root, secrets=STORE_SECRETS)
    published = run_container(containers["publish"], volumes, root, secrets=STORE_SECRETS)
    return {
        "settings": settings,
        "md": md,
        "key": key,
        "root": root,
        "store": store,
        "staged": staged,
        "built": built,
        "published": published,
        "build_job": build_job,
        "url": url,
    }


def test_the_source_job_sends_the_tenants_model_and_gets_a_kept_receipt(
    cluster_build: dict[str, Any],
) -> None:
    staged = cluster_build["staged"]
    assert staged.returncode == 0, staged.stderr
    summary = parse_stage_summary(staged.message)
    assert summary is not None
    assert summary.ok
    md = cluster_build["md"]
    sha = md.spec.model.source.sha256
    assert receipt_kept(cluster_build["settings"], summary.receipt, sha, UID, True)


def test_the_build_step_and_the_publisher_make_a_sealed_entry(
    cluster_build: dict[str, Any],
) -> None:
    built, published = cluster_build["built"], cluster_build["published"]
    assert built.returncode == 0, built.stderr
    assert published.returncode == 0, published.stderr
    summary = parse_summary(published.message)
    assert summary is not None
    assert summary.ok, summary
    assert summary.key == cluster_build["key"]
    assert summary.cached is False
    # The build step wrote only what an entry holds; the publisher kept the source no longer.
    output = cluster_build["root"] / "output"
    assert (output / BUILD_RECORD).is_file()
    sha = cluster_build["md"].spec.model.source.sha256
    staged, get = get_source(cluster_build["url"], sha, UID)
    assert call(staged, token=get)[0] == 404


async def test_the_operator_verifies_the_entry_and_a_pod_pulls_it_pinned(
    cluster_build: dict[str, Any], tmp_path: Path
) -> None:
    store, key, settings = cluster_build["store"], cluster_build["key"], cluster_build["settings"]
    found = await EngineStore(FileStore(store), settings.mac_key).read(key)
    assert found.entry is not None, found.refusal
    manifest = EngineManifest.model_validate(found.entry)
    _, deployment = render_revision(
        cluster_build["md"], 1, manifest, settings, manifest_sha256=found.digest
    )
    pull = pod_containers(deployment)[PULL_CONTAINER]
    ran = run_container(pull, {"engine": tmp_path / "engine", "tmp": tmp_path / "tmp"}, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "every sha256 checked" in ran.stdout
    digest = key.removeprefix("sha256:")
    source = store / digest / "repository" / "model" / "1"
    pulled = tmp_path / "engine"
    assert sorted(p.name for p in pulled.iterdir()) == sorted(p.name for p in source.iterdir())
    for path in source.iterdir():
        assert (pulled / path.name).read_bytes() == path.read_bytes()
    # The validation Job reads the entry's set the same way, checked against engine.json.
    request = validation_request(cluster_build["md"], manifest, ["10.0.0.1:8001"], settings)
    arrays = reference_set(request, tmp_path)
    assert any(name.startswith("input.") for name in arrays)
    assert all(isinstance(a, np.ndarray) for a in arrays.values())


def test_a_pod_without_the_entrys_token_gets_nothing(cluster_build: dict[str, Any]) -> None:
    url, key = cluster_build["url"], cluster_build["key"]
    digest = key.removeprefix("sha256:")
    assert call(f"{url}/entries/{digest}/engine.json", token="")[0] == 403
    other = integrity.token(TRANSFER, integrity.entry_scope("0" * 64))
    assert call(f"{url}/entries/{digest}/engine.json", token=other)[0] == 403
    mine = integrity.token(TRANSFER, integrity.entry_scope(digest))
    assert call(f"{url}/entries/{digest}/engine.json", token=mine)[0] == 200
    for path in ("../engine.json", "repository/model/1/../../../engine.json", "build.json"):
        assert call(f"{url}/entries/{digest}/{path}", token=mine)[0] == 404, path


async def test_a_file_changed_after_publishing_is_refused_by_the_pod_then_the_operator(
    cluster_build: dict[str, Any], tmp_path: Path
) -> None:
    store, key, settings = cluster_build["store"], cluster_build["key"], cluster_build["settings"]
    copy = tmp_path / "store"
    import shutil

    shutil.copytree(store, copy)
    digest = key.removeprefix("sha256:")
    model = copy / digest / "repository" / "model" / "1" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    engine_store = EngineStore(FileStore(copy), settings.mac_key)
    found = await engine_store.read(key)
    assert found.entry is not None, "engine.json itself is intact"
    with engine_server_thread(copy, tmp_path / "inbox") as url:
        local = settings.model_copy(update={"store_server": url})
        manifest = EngineManifest.model_validate(found.entry)
        _, deployment = render_revision(
            cluster_build["md"], 1, manifest, local, manifest_sha256=found.digest
        )
        pull = pod_containers(deployment)[PULL_CONTAINER]
        volumes = {"engine": tmp_path / "engine", "tmp": tmp_path / "tmp"}
        ran = run_container(pull, volumes, tmp_path)
    assert ran.returncode == 3
    assert not (tmp_path / "engine" / "model.onnx").exists()
    pod = {
        "status": {
            "initContainerStatuses": [
                {"name": PULL_CONTAINER, "lastState": {"terminated": {"message": ran.message}}}
            ]
        }
    }
    report = tampered_report([pod], PULL_CONTAINER)
    assert report is not None
    assert await engine_store.check_files(key, report) is True
    refused = await engine_store.read(key)
    assert refused.entry is None
    assert refused.refusal is not None
    assert "model.onnx" in refused.refusal


def test_the_publisher_replaces_a_changed_entry_and_keeps_an_intact_one(
    cluster_build: dict[str, Any], tmp_path: Path
) -> None:
    store, key = cluster_build["store"], cluster_build["key"]
    digest = key.removeprefix("sha256:")
    engine_json = store / digest / "engine.json"
    before = engine_json.read_bytes()
    publish = pod_containers(cluster_build["build_job"])["publish"]
    volumes = {
        "publish-tmp": tmp_path / "tmp",
        "output": cluster_build["root"] / "output",
        "store": store,
    }
    kept = run_container(publish, volumes, tmp_path, secrets=STORE_SECRETS)
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.message)["cached"] is True
    assert engine_json.read_bytes() == before
    time.sleep(0.01)
    data = json.loads(before)
    engine_json.write_text(json.dumps({**data, "maxBatchSize": 64}))
    replaced = run_container(publish, volumes, tmp_path, secrets=STORE_SECRETS)
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(replaced.message)["cached"] is False
    integrity.verify_manifest(engine_json.read_bytes(), TEST_MAC_KEY.encode())


@pytest.mark.parametrize("trick", ["symlink", "extra", "model.py"])
def test_the_publisher_takes_nothing_but_the_engine_from_the_build(
    cluster_build: dict[str, Any], tmp_path: Path, trick: str
) -> None:
    import shutil

    output = tmp_path / "output"
    shutil.copytree(cluster_build["root"] / "output", output)
    version = output / "repository" / "model" / "1"
    if trick == "symlink":  # e.g. to the publisher's key, or /proc/self/environ
        (version / "model.onnx").unlink()
        (version / "model.onnx").symlink_to("/proc/self/environ")
    elif trick == "extra":
        (output / "notes.txt").write_text("hello")
    else:  # code for the python backend, from the user's side
        (version / "model.py").write_text("import os; os.system('id')")
    record = EngineManifest.model_validate_json((output / BUILD_RECORD).read_bytes())
    from modelops_builder.errors import BuildError

    with pytest.raises(BuildError) as refused:
        import_output(output, tmp_path / "staging", record)
    assert refused.value.reason == "InvalidBuildOutput"
