"""GPU detection against nvidia-smi stand-ins (real processes on PATH), and GpuUnavailable's text.

Each stand-in answers as nvidia-smi does for one kind of node: a current driver, a driver before
R510 (which rejects the compute_cap field and with it the whole query), no driver loaded.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from modelops_builder import gpu
from modelops_builder.gpu import GpuInfo, detect_gpu, gpu_unavailable, parse_query

# As seen on the lent H200 (docs/builder.md): the banner names the newest CUDA the driver runs.
CURRENT = """\
case "$1" in
  --query-gpu=name,driver_version,compute_cap) echo "NVIDIA H200, 580.159.04, 9.0" ;;
  "") echo "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0     |" ;;
  *) echo "unexpected $*" >&2; exit 2 ;;
esac
"""
# Drivers before R510 do not know compute_cap: nvidia-smi refuses the query and exits 2.
OLD_DRIVER = """\
case "$1" in
  --query-gpu=name,driver_version,compute_cap)
    echo 'Field "compute_cap" is not a valid field to query.'; echo; exit 2 ;;
  --query-gpu=name,driver_version) echo "Tesla T4, 470.57.02" ;;
  *) echo "unexpected $*" >&2; exit 2 ;;
esac
"""
NO_DRIVER = """\
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. \
Make sure that the latest NVIDIA driver is installed and running."
exit 9
"""
NOT_AVAILABLE = 'echo "NVIDIA A100-SXM4-40GB, [N/A], [N/A]"\n'


Install = Callable[[str], Path]


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Install:
    """Put an nvidia-smi script with the given body first on PATH."""

    def install(body: str) -> Path:
        script = tmp_path / "bin" / "nvidia-smi"
        script.parent.mkdir(exist_ok=True)
        script.write_text("#!/usr/bin/env bash\n" + body)
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
        monkeypatch.delenv(gpu.NO_GPU_ENV, raising=False)
        return script

    return install


def test_current_driver_reports_name_driver_and_compute_capability(smi: Install) -> None:
    smi(CURRENT)
    assert detect_gpu() == GpuInfo(True, "NVIDIA H200", "9.0", driver_version="580.159.04")


def test_old_driver_falls_back_to_the_basic_query(smi: Install) -> None:
    """The original one-shot query with compute_cap made such a node look GPU-less."""
    smi(OLD_DRIVER)
    found = detect_gpu()
    assert found.present, found.why_absent
    assert (found.name, found.driver_version, found.compute_capability) == (
        "Tesla T4",
        "470.57.02",
        None,
    )


def test_no_driver_means_no_gpu_with_nvidia_smis_words(smi: Install) -> None:
    smi(NO_DRIVER)
    found = detect_gpu()
    assert not found.present
    assert found.why_absent is not None
    assert "couldn't communicate with the NVIDIA driver" in found.why_absent


def test_not_available_fields_are_none(smi: Install) -> None:
    smi(NOT_AVAILABLE)
    found = detect_gpu()
    assert found == GpuInfo(True, "NVIDIA A100-SXM4-40GB", None, driver_version=None)


def test_no_gpu_env_wins(smi: Install, monkeypatch: pytest.MonkeyPatch) -> None:
    smi(CURRENT)
    monkeypatch.setenv(gpu.NO_GPU_ENV, "1")
    assert not detect_gpu().present


def test_parse_query_keeps_commas_in_the_name() -> None:
    fields = ("name", "driver_version", "compute_cap")
    assert parse_query("Odd, Name GPU, 555.1, 8.9", fields) == {
        "name": "Odd, Name GPU",
        "driver_version": "555.1",
        "compute_cap": "8.9",
    }
    assert parse_query("too short", fields) == {}


def test_gpu_unavailable_names_the_driver_and_the_cuda_the_image_needs(
    smi: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    smi(CURRENT)
    monkeypatch.setenv(gpu.IMAGE_CUDA_ENV, "13.4.3.001")
    found = detect_gpu()
    error = gpu_unavailable(found, "TensorRT cannot create a builder")
    assert (error.reason, error.kind) == ("GpuUnavailable", "infrastructure")
    assert "NVIDIA H200 has NVIDIA driver 580.159.04 (CUDA 13.0 at most)" in error.message
    assert "needs a driver that supports CUDA 13.4.3.001" in error.message
    assert error.message.startswith("TensorRT cannot create a builder. ")


def test_gpu_unavailable_without_nvidia_smi_still_says_what_it_knows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv(gpu.IMAGE_CUDA_ENV, "13.4.3.001")
    error = gpu_unavailable(None, "torch cannot use CUDA")
    assert "The GPU has NVIDIA driver unknown;" in error.message
    assert "CUDA 13.4.3.001" in error.message
