"""The clients users run, each on its own thread, recording every request's outcome: short-lived
HTTP connections (one per request), one keep-alive HTTP client, one gRPC channel."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.support.triton_models import INPUT_NAME, WIDTH

SHORT_LIVED, KEEP_ALIVE, GRPC = "short-lived", "keep-alive", "grpc"


@dataclass(frozen=True)
class Outcome:
    """One request: when it started (monotonic), its latency, and its error if it failed."""

    at: float
    client: str
    seconds: float
    error: str | None


@dataclass
class ClientMix:
    """Steady load on one model through an HTTP and a gRPC address until stopped."""

    http_url: str
    grpc_url: str
    model: str
    short_lived: int = 2
    keep_alive: bool = True
    grpc: bool = True
    pause_seconds: float = 0.005
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _loop(self, client: str, send: Callable[[], None]) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            error: str | None = None
            try:
                send()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            self.outcomes.append(Outcome(start, client, time.monotonic() - start, error))
            time.sleep(self.pause_seconds)

    def _http(self, keep_alive: bool) -> Callable[[], None]:
        x = np.ones((1, WIDTH), np.float32)
        shared = httpclient.InferenceServerClient(self.http_url) if keep_alive else None

        def send() -> None:
            client = shared or httpclient.InferenceServerClient(self.http_url)
            tensor = httpclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
            tensor.set_data_from_numpy(x, binary_data=True)
            try:
                client.infer(self.model, [tensor])
            finally:
                if shared is None:
                    client.close()

        return send

    def _grpc(self) -> Callable[[], None]:
        x = np.ones((1, WIDTH), np.float32)
        client = grpcclient.InferenceServerClient(self.grpc_url)

        def send() -> None:
            tensor = grpcclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
            tensor.set_data_from_numpy(x)
            client.infer(self.model, [tensor], client_timeout=10)

        return send

    def start(self) -> ClientMix:
        """Start every client."""
        loops = [(SHORT_LIVED, self._http(keep_alive=False)) for _ in range(self.short_lived)]
        if self.keep_alive:
            loops.append((KEEP_ALIVE, self._http(keep_alive=True)))
        if self.grpc:
            loops.append((GRPC, self._grpc()))
        for client, send in loops:
            thread = threading.Thread(target=self._loop, args=(client, send), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop every client and wait for its last request."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def between(self, start: float, end: float) -> list[Outcome]:
        """Requests that started in [start, end)."""
        return [o for o in list(self.outcomes) if start <= o.at < end]

    def failures(self) -> list[Outcome]:
        """Every failed request so far."""
        return [o for o in list(self.outcomes) if o.error is not None]
