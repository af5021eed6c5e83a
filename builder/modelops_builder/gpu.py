"""What GPU this node has, asked of nvidia-smi without loading any CUDA library.

Light module: no torch, no tensorrt. `detect_gpu` runs before anything heavy is imported, so a CPU
node learns it has no GPU cheaply. `gpu_unavailable` turns a CUDA or driver failure found later
(TensorRT's builder or runtime, torch's CUDA) into the infrastructure error the user can act on:
it names the node's driver and the CUDA the image was built for.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError

log = logging.getLogger(__name__)

# Set to "1" to behave as if no GPU were present (a CPU-only dry run on a GPU node).
NO_GPU_ENV = "MODELOPS_NO_GPU"
# NVIDIA's CUDA and NGC images set CUDA_VERSION to the toolkit they carry (e.g. 13.4.3.001).
IMAGE_CUDA_ENV = "CUDA_VERSION"
# compute_cap is a query field only since driver R510: older drivers reject the whole query, so
# the full query comes first and the basic one is the fallback.
FULL_QUERY = ("name", "driver_version", "compute_cap")
BASIC_QUERY = ("name", "driver_version")
SMI_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class GpuInfo:
    """What the node has: a GPU or not, its name, compute capability and driver when known."""

    present: bool
    name: str | None = None
    compute_capability: str | None = None
    why_absent: str | None = None
    driver_version: str | None = None


def _value(text: str) -> str | None:
    """nvidia-smi prints [N/A] or [Not Supported] for a field it cannot fill."""
    text = text.strip()
    return None if not text or text.startswith("[") else text


def parse_query(line: str, fields: tuple[str, ...]) -> dict[str, str | None]:
    """One CSV line of `--query-gpu` (noheader) as {field: value}; a name may hold commas."""
    parts = line.split(",")
    if len(parts) < len(fields):
        return {}
    head = len(parts) - len(fields) + 1  # extra commas belong to the first field, the name
    values = [",".join(parts[:head]), *parts[head:]]
    return {field: _value(value) for field, value in zip(fields, values, strict=True)}


def _field_rejected(output: str) -> bool:
    # nvidia-smi: 'Field "compute_cap" is not a valid field to query.'
    return "not a valid field" in output


def query_gpu(smi: str, fields: tuple[str, ...]) -> tuple[dict[str, str | None] | None, str]:
    """(values of the first GPU, or None, and nvidia-smi's own words when it failed)."""
    proc = subprocess.run(
        [smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=SMI_TIMEOUT_SECONDS,
        check=False,
    )
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        return None, output or f"exit code {proc.returncode}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    values = parse_query(lines[0], fields) if lines else {}
    return (values or None), output


def detect_gpu() -> GpuInfo:
    """Find an NVIDIA GPU with nvidia-smi (falling back to /dev/nvidia0), never importing CUDA."""
    if os.environ.get(NO_GPU_ENV) == "1":
        return GpuInfo(False, why_absent=f"{NO_GPU_ENV}=1")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            values, said = query_gpu(smi, FULL_QUERY)
            if values is None and _field_rejected(said):
                log.info("nvidia-smi rejects compute_cap (driver before R510): basic query")
                values, said = query_gpu(smi, BASIC_QUERY)
        except (OSError, subprocess.SubprocessError) as exc:
            return GpuInfo(False, why_absent=f"nvidia-smi failed: {exc}")
        if values is None:
            first = said.splitlines()[0] if said else "no output"
            return GpuInfo(False, why_absent=f"nvidia-smi failed: {first}")
        return GpuInfo(
            True,
            name=values.get("name"),
            compute_capability=values.get("compute_cap"),
            driver_version=values.get("driver_version"),
        )
    if Path("/dev/nvidia0").exists():
        return GpuInfo(True)
    return GpuInfo(False, why_absent="no /dev/nvidia0 and no working nvidia-smi")


def driver_cuda_version() -> str | None:
    """The newest CUDA the driver supports, from nvidia-smi's banner ("CUDA Version: 13.0").

    There is no --query-gpu field for it; only asked on the failure path, one process call.
    """
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        banner = subprocess.run(
            [smi], capture_output=True, text=True, timeout=SMI_TIMEOUT_SECONDS, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"CUDA Version:\s*([0-9.]+)", banner)
    return found.group(1) if found else None


def image_cuda_version() -> str | None:
    """The CUDA toolkit this image was built with (CUDA_VERSION, else torch's), None if unknown."""
    found = os.environ.get(IMAGE_CUDA_ENV)
    if found:
        return found
    try:
        import torch
    except ImportError:
        return None
    return str(torch.version.cuda) if torch.version.cuda else None


def gpu_unavailable(gpu: GpuInfo | None, what_failed: str) -> BuildError:
    """GpuUnavailable for a CUDA/driver failure: names the driver and the CUDA the image needs.

    Infrastructure, like a missing GPU: the request is fine, the node's driver is too old for the
    image (or the GPU is broken or taken); the same request builds on a suitable node.
    """
    name = (gpu.name if gpu else None) or "The GPU"
    driver = (gpu.driver_version if gpu else None) or "unknown"
    supports = driver_cuda_version()
    driver_cuda = f" (CUDA {supports} at most)" if supports else ""
    cuda = image_cuda_version() or "unknown"
    return BuildError(
        "GpuUnavailable",
        f"{what_failed}. {name} has NVIDIA driver {driver}{driver_cuda}; this image needs a "
        f"driver that supports CUDA {cuda} (or CUDA forward compatibility on a data-center GPU): "
        "run the build on a node with a newer driver",
        "infrastructure",
    )
