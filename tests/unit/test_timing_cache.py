"""Finding 8 of issue 23: the TensorRT timing cache is sealed, named by the operator from the
request (the tenant's namespace, the spec's GPU, the chart's TensorRT), and one tenant's cache
never reaches another tenant's build."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelops_builder.publish import _keep_timing_cache
from modelops_builder.store import open_store
from modelops_builder.timing_cache import fetch_main, keep, load
from modelops_contract.integrity import MAC_KEY_ENV
from modelops_contract.request import BuildRequest
from modelops_operator.render.job import render_build_job, timing_cache_name
from tests.support.decide_world import SETTINGS
from tests.support.engine_store import TEST_MAC_KEY
from tests.support.render_cases import KEY, make_md

MAC = TEST_MAC_KEY.encode()
ML = "_timing_cache/ml/NVIDIA-L4-trt11.4.0.106.cache"
OTHER = "_timing_cache/other/NVIDIA-L4-trt11.4.0.106.cache"


def _request(store: Path, name: str | None) -> BuildRequest:
    return BuildRequest(
        source_uri="pvc://m/model.onnx",
        sha256="ab" * 32,
        engine="tensorrt",
        store=str(store),
        timing_cache=name,
    )


def test_finding_8_the_operator_names_the_cache_per_tenant() -> None:
    md = make_md(build={"engine": "tensorrt", "gpu": {"product": "NVIDIA-L4"}})
    assert (
        timing_cache_name(md, SETTINGS)
        == f"_timing_cache/ml/NVIDIA-L4-trt{SETTINGS.tensorrt_version}.cache"
    )
    job = render_build_job(md, KEY, SETTINGS)
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    assert init["name"] == "timing-cache"
    assert init["command"][:2] == ["python", "-I"]
    assert "*" not in " ".join(init["args"]), "one named cache, no wildcard over every tenant's"
    s3 = SETTINGS.model_copy(update={"store_uri": "s3://b/p", "store_secret": "s"})
    assert timing_cache_name(md, s3) is None
    assert timing_cache_name(make_md(build={"engine": "onnxruntime"}), SETTINGS) is None


def test_finding_8_a_cache_is_used_only_when_its_seal_verifies(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    keep(store, ML, b"timings", MAC)
    assert load(store, ML, MAC) == b"timings"
    (tmp_path / ML).write_bytes(b"poisoned")
    assert load(store, ML, MAC) is None
    (tmp_path / f"{ML}.mac").unlink()
    (tmp_path / ML).write_bytes(b"timings")
    assert load(store, ML, MAC) is None, "an unsealed cache (an older builder's) is not used"


def test_finding_8_one_tenants_cache_never_reaches_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAC_KEY_ENV, TEST_MAC_KEY)
    store = open_store(str(tmp_path / "store"))
    keep(store, ML, b"ml-timings", MAC)
    # copied whole (cache and seal) under the other tenant's name: the seal names the tenant
    (tmp_path / "store" / OTHER).parent.mkdir(parents=True)
    shutil.copy(tmp_path / "store" / ML, tmp_path / "store" / OTHER)
    shutil.copy(tmp_path / "store" / f"{ML}.mac", tmp_path / "store" / f"{OTHER}.mac")
    into = tmp_path / "cache"
    request = _request(tmp_path / "store", OTHER)
    assert fetch_main(["--request", request.model_dump_json(), "--into", str(into)]) == 0
    assert not into.exists() or not any(into.iterdir())
    mine = _request(tmp_path / "store", ML)
    assert fetch_main(["--request", mine.model_dump_json(), "--into", str(into)]) == 0
    assert (into / Path(ML).name).read_bytes() == b"ml-timings"


def test_finding_8_the_publisher_keeps_the_cache_under_the_requests_name(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "timing.cache").write_bytes(b"new timings")
    _keep_timing_cache(store, out, _request(tmp_path / "store", ML), MAC)
    assert load(store, ML, MAC) == b"new timings"
    kept = sorted(
        p.relative_to(tmp_path / "store").as_posix()
        for p in (tmp_path / "store").rglob("*")
        if p.is_file()
    )
    assert kept == [ML, f"{ML}.mac"]  # nothing under a name the build chose
    # a linked or executable cache file is not kept
    (out / "timing.cache").chmod(0o755)
    _keep_timing_cache(store, out, _request(tmp_path / "store", OTHER), MAC)
    assert load(store, OTHER, MAC) is None
    # without a name from the request, nothing is kept
    _keep_timing_cache(store, out, _request(tmp_path / "store", None), MAC)
    assert len(list((tmp_path / "store").rglob("*.cache"))) == 1
