"""Start the real `tritonserver` binary shipped in the nvidia-pytriton wheel, on loopback.

Used by `modelops dev` and by the tests: the same Triton the production image runs (2.51, CPU,
python backend only). It lives in the builder package because it needs the builder extra.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class TritonUnavailableError(RuntimeError):
    """The tritonserver binary is not installed or failed to start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that are free right now (all bound at once, so the
    kernel cannot hand the same one out twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def triton_root() -> Path:
    """The `pytriton/tritonserver` folder of the installed wheel."""
    try:
        import pytriton
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise TritonUnavailableError(
            "tritonserver comes from the nvidia-pytriton wheel: pip install -e '.[builder]'"
        ) from exc
    return Path(pytriton.__file__).parent / "tritonserver"


def _backends_dir(root: Path, cache: Path) -> Path:
    """A backends folder with the python backend and the stub for this interpreter.

    The wheel keeps the stubs per Python version apart from the backend; Triton looks for the
    stub beside the backend, so we assemble our own folder instead of writing into site-packages.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonUnavailableError(f"no python backend stub for Python {version} in {root}")
    target = cache / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in [stub, *(root / "backends" / "python").iterdir()]:
        dst = target / src.name
        if src.is_file() and not dst.exists():
            shutil.copy2(src, dst)
    return cache / "backends"


@dataclass
class TritonProcess:
    """A running tritonserver and its loopback ports."""

    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    workdir: Path = field(repr=False)

    @property
    def http_url(self) -> str:
        """host:port of the HTTP endpoint (tritonclient style, no scheme)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics page."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        """The server's log so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _answers(url: str) -> bool:
    """True when a loopback URL of the local server answers 200."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not a loopback URL of the local Triton: {url}")
    req = urllib.request.Request(url, headers={"Connection": "close"})  # noqa: S310 - checked
    try:
        with urllib.request.urlopen(req, timeout=1) as resp:  # noqa: S310 - loopback only
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_triton(
    model_repository: Path,
    *,
    startup_timeout: float = 90.0,
    extra_args: list[str] | None = None,
    workdir: Path | None = None,
) -> TritonProcess:
    """Start tritonserver on free loopback ports and wait until /v2/health/ready answers 200.

    A port taken by someone else between choosing and binding it (other servers start at the
    same time) makes Triton exit at once: it is started again on other ports, at most 3 times."""
    for attempt in range(PORT_ATTEMPTS):
        try:
            return _start_once(model_repository, startup_timeout, extra_args, workdir)
        except PortTakenError:
            if attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


PORT_ATTEMPTS = 3
PORT_TAKEN_MARKERS = ("cannot listen", "address already in use", "failed to bind")


class PortTakenError(TritonUnavailableError):
    """tritonserver exited because one of its ports was taken."""


def _start_once(
    model_repository: Path,
    startup_timeout: float,
    extra_args: list[str] | None,
    workdir: Path | None,
) -> TritonProcess:
    root = triton_root()
    binary = root / "bin" / "tritonserver"
    if not binary.exists():
        raise TritonUnavailableError(f"tritonserver binary not found at {binary}")
    work = workdir or Path(tempfile.mkdtemp(prefix="modelops-triton-"))
    backends = _backends_dir(root, work)
    http_port, grpc_port, metrics_port = free_ports(3)
    libs = root.parent.parent / "nvidia_pytriton.libs"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    args = [
        str(binary),
        f"--model-repository={model_repository}",
        f"--backend-directory={backends}",
        "--model-control-mode=none",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--metrics-config=summary_latencies=true",
        "--exit-timeout-secs=5",
        *(extra_args or []),
    ]
    log_path = work / "tritonserver.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = TritonProcess(proc, http_port, grpc_port, metrics_port, log_path, work)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = server.log()
            taken = any(marker in text.lower() for marker in PORT_TAKEN_MARKERS)
            error = PortTakenError if taken else TritonUnavailableError
            raise error(f"tritonserver exited {proc.returncode}:\n{text}")
        # Triton starts its metrics server after the HTTP endpoint reports ready: a caller's
        # first scrape must not find the port closed.
        if _answers(f"http://127.0.0.1:{http_port}/v2/health/ready") and _answers(
            server.metrics_url
        ):
            return server
        time.sleep(0.2)
    server.stop()
    raise TritonUnavailableError(f"tritonserver not ready in {startup_timeout}s:\n{server.log()}")


@contextlib.contextmanager
def running_triton(model_repository: Path, **kwargs: object) -> Iterator[TritonProcess]:
    """Context manager around start_triton that always stops the server."""
    server = start_triton(model_repository, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
