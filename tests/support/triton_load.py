"""Real Triton servers behind fake pod IPs, and a bounded load driver (operator tests, benches).

kmock pods get made-up IPs; the operator's `metrics_url` indirection maps each IP to the
metrics port of a tritonserver running on loopback, so the operator scrapes real
`nv_inference_*` counters of the traffic the test sends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.triton_models import INPUT_NAME, WIDTH, write_model

MODEL = "model"
FAIL_EVERY = 4  # the faulty canary: every 4th request fails (errorRate 0.25)


@contextmanager
def tritons(root: Path, **models: int) -> Iterator[dict[str, Any]]:
    """Start one tritonserver per `name=fail_every` (0: healthy) at once; stop them all."""
    from modelops_builder.triton_local import start_triton

    repos = {}
    for name, fail_every in models.items():
        repo = root / name
        write_model(repo, MODEL, fail_every=fail_every)
        repos[name] = repo
    with ExitStack() as stack, ThreadPoolExecutor(len(repos)) as pool:
        futures = {name: pool.submit(start_triton, repo) for name, repo in repos.items()}
        servers = {}
        for name, future in futures.items():
            server = future.result()
            stack.callback(server.stop, 10.0)
            servers[name] = server
        yield servers


def ip_router(routes: Mapping[str, Any], default: Any) -> Callable[[Mapping[str, Any]], str]:
    """metrics_url for the operator: pods whose IP starts with a prefix go to that server."""

    def metrics_url(pod: Mapping[str, Any]) -> str:
        ip = str((pod.get("status") or {}).get("podIP") or "")
        server = next((s for prefix, s in routes.items() if ip.startswith(prefix)), default)
        return str(server.metrics_url)

    return metrics_url


@dataclass
class Load:
    """Sequential gRPC inferences from a thread until stopped or `max_seconds` passed."""

    grpc_url: str
    max_seconds: float = 30.0
    sent: int = 0
    failed: int = 0
    first_at: float | None = None
    first_failure_at: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        client = grpcclient.InferenceServerClient(self.grpc_url)
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                inp = grpcclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
                inp.set_data_from_numpy(np.ones((1, WIDTH), dtype=np.float32))
                if self.first_at is None:
                    self.first_at = time.monotonic()
                try:
                    client.infer(MODEL, [inp])
                except InferenceServerException:
                    self.failed += 1
                    if self.first_failure_at is None:
                        self.first_failure_at = time.monotonic()
                self.sent += 1
        finally:
            client.close()

    def start(self) -> Load:
        """Begin sending."""
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
