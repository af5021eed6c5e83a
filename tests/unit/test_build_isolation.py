"""Finding 1 of issue 23: the publishing step reads nothing the build step can write but the
checked output folder, the output is checked file by file, and TorchScript builds only where
the platform admin allows it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from modelops_builder.errors import BuildError
from modelops_builder.publish import import_output
from modelops_builder.seal import BUILD_RECORD, read_record
from modelops_contract.layout import REPOSITORY_DIR, VERSION_DIR
from modelops_contract.manifest import EngineManifest
from modelops_contract.validation import VALIDATION_SET_NAME
from modelops_operator.decide.policy import policy_refusal
from modelops_operator.render.job import render_build_job
from tests.support.decide_world import SETTINGS, World, body, spec
from tests.support.render_cases import KEY, make_md


def _containers(job: dict[str, Any]) -> list[dict[str, Any]]:
    pod = job["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize(
    "settings",
    [SETTINGS, SETTINGS.model_copy(update={"store_uri": "s3://b/p", "store_secret": "s3"})],
    ids=["pvc", "s3"],
)
@pytest.mark.parametrize("engine", ["tensorrt", "onnxruntime"])
def test_finding_1_publish_reads_nothing_the_build_step_can_write(
    settings: Any, engine: str
) -> None:
    md = make_md(build={"engine": engine, "gpu": {"product": "NVIDIA-L4"}})
    job = render_build_job(md, KEY, settings)
    *steps, publish = _containers(job)
    assert publish["name"] == "publish"
    written = {m["name"] for c in steps for m in c.get("volumeMounts", []) if not m.get("readOnly")}
    read = {m["name"]: m for m in publish["volumeMounts"]}
    # the only volume both share is the output, and the publisher cannot write it
    assert set(read) & written == {"output"}
    assert read["output"]["readOnly"] is True
    # its HOME and /tmp are its own; Python runs isolated (no user site, no PYTHON* variables)
    home = next(e["value"] for e in publish["env"] if e["name"] == "HOME")
    assert next(m for m in publish["volumeMounts"] if m["mountPath"] == home)["name"] not in written
    assert publish["command"][:3] == ["python", "-I", "-m"]
    assert not [e for e in publish["env"] if e["name"].startswith("PYTHON")]
    assert publish["securityContext"]["readOnlyRootFilesystem"] is True


def _record(engine: str = "onnxruntime") -> EngineManifest:
    return EngineManifest(
        key="sha256:" + "ab" * 32,
        engine=engine,
        precision="fp32",
        serving_backend="onnxruntime",
        model_name="model",
        model_file="model.onnx",
        inputs=[{"name": "input", "data_type": "FP32", "dims": [4]}],
        outputs=[{"name": "out", "data_type": "FP32", "dims": [2]}],
        max_batch_size=4,
        opt_batch_size=4,
        source_sha256="cd" * 32,
        format="onnx",
        created_at="2025-01-01T00:00:00Z",
    )


def _output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    version = out / REPOSITORY_DIR / "model" / VERSION_DIR
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(b"onnx")
    (out / VALIDATION_SET_NAME).write_bytes(b"npz")
    (out / BUILD_RECORD).write_text(_record().model_dump_json())
    return out


def _model(out: Path) -> Path:
    return out / REPOSITORY_DIR / "model" / VERSION_DIR / "model.onnx"


def test_a_clean_output_is_imported(tmp_path: Path) -> None:
    out = _output(tmp_path)
    import_output(out, tmp_path / "staging", read_record(out))
    assert (tmp_path / "staging" / REPOSITORY_DIR / "model" / VERSION_DIR / "model.onnx").exists()


@pytest.mark.parametrize(
    ("plant", "says"),
    [
        (lambda out: _model(out).chmod(0o755), "never executable"),
        (lambda out: _model(out).chmod(0o4644), "never executable"),
        (lambda out: (out / VALIDATION_SET_NAME).chmod(0o2644), "never executable"),
        (lambda out: os.link(_model(out), out / "x"), "hard links|not among the files"),
        (lambda out: os.link(out / VALIDATION_SET_NAME, out / "stash"), "not among the files"),
        (lambda out: (out / "evil.pth").write_text("import os"), "not among the files"),
        (lambda out: (out / REPOSITORY_DIR / "m.py").write_text("x"), "not among the files"),
        (lambda out: (out / ".local").mkdir(), "not among the files"),
        (lambda out: _replace_with_link(_model(out), "/etc/passwd"), "not a regular file"),
        (lambda out: _replace_with_fifo(out / VALIDATION_SET_NAME), "not a regular file"),
    ],
)
def test_finding_1_the_output_is_checked_file_by_file(
    tmp_path: Path, plant: Any, says: str
) -> None:
    out = _output(tmp_path)
    plant(out)
    with pytest.raises(BuildError, match=says) as caught:
        import_output(out, tmp_path / "staging", read_record(out))
    assert caught.value.reason == "InvalidBuildOutput"
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").rglob("*.onnx"))


def test_finding_1_a_hard_linked_engine_file_is_refused(tmp_path: Path) -> None:
    out = _output(tmp_path)
    os.link(_model(out), tmp_path / "outside")  # a second name the build step keeps
    with pytest.raises(BuildError, match="hard links"):
        import_output(out, tmp_path / "staging", read_record(out))


@pytest.mark.parametrize(
    "plant",
    [
        lambda out: _replace_with_link(out / BUILD_RECORD, "/etc/hostname"),
        lambda out: (out / BUILD_RECORD).write_text(" " * (1024 * 1024 + 1)),
    ],
)
def test_finding_1_the_build_record_is_read_as_small_plain_data(tmp_path: Path, plant: Any) -> None:
    out = _output(tmp_path)
    plant(out)
    with pytest.raises(BuildError, match="no valid build record"):
        read_record(out)


def _replace_with_link(path: Path, target: str) -> None:
    path.unlink()
    path.symlink_to(target)


def _replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize(
    ("allowed", "namespace", "refused"),
    [
        ([], "ml", True),
        (["other"], "ml", True),
        (["ml"], "ml", False),
        (["*"], "ml", False),
        (["ml"], "ml2", True),
    ],
)
def test_finding_1_torchscript_builds_only_where_the_admin_allows(
    allowed: list[str], namespace: str, refused: bool
) -> None:
    settings = SETTINGS.model_copy(update={"torchscript_namespaces": allowed})
    scripted = make_md(model={**_torchscript_model()})
    scripted.metadata.namespace = namespace
    refusal = policy_refusal(scripted, settings)
    assert (refusal is not None) == refused
    if refusal:
        assert "spec.model.format" in refusal
        assert "build.allowTorchScript" in refusal
        assert "exported-program" in refusal
    exported = make_md(model={**_torchscript_model(), "format": "exported-program"})
    assert policy_refusal(exported, settings) is None


def _torchscript_model() -> dict[str, Any]:
    return {
        "source": {"uri": "s3://bucket/m.pt", "sha256": "cd" * 32},
        "format": "torchscript",
        "inputs": [{"name": "x", "dataType": "FP32", "dims": [4]}],
    }


def test_finding_1_a_refused_torchscript_spec_creates_nothing() -> None:
    world = World(body(spec(**{"model": _torchscript_model()})))
    plan = world.decide()
    assert not plan.changes  # no Job, no Deployment: only the InvalidSpec Event
    assert plan.status["phase"] == "Failed"
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert "build.allowTorchScript" in ready["message"]
