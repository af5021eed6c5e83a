"""Shared by bench_rollback.py and bench_scale.py: kmock + the whole operator + real Tritons.

The operator runs in its own thread and event loop (as in tests/integration/conftest.py); the
benchmark plays the cluster's controllers through tests/integration/kmock_support.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "builder"), str(ROOT / "tests" / "integration")]

import kmock  # noqa: E402
import kopf  # noqa: E402
from kmock_support import Cluster, declare_resources, eventually  # noqa: E402

from modelops_operator.handlers import Operator, OperatorOptions, build  # noqa: E402
from modelops_operator.settings import Settings  # noqa: E402


@contextlib.asynccontextmanager
async def running_operator(
    metrics_url: Callable[[Mapping[str, Any]], str], **settings: Any
) -> AsyncIterator[tuple[Cluster, Operator, Settings, Path]]:
    """kmock on loopback and the operator against it; yields (cluster, op, settings, store)."""
    store = Path(tempfile.mkdtemp(prefix="modelops-bench-store-"))
    conf = Settings(
        store_mount_path=str(store),
        reconcile_interval_seconds=60.0,
        log_format="plain",
        **settings,
    )
    async with kmock.KubernetesEmulator() as api, kmock.Server(api):
        declare_resources(api)
        url = str(api.url).rstrip("/")

        async def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=url, insecure=True)

        options = OperatorOptions(
            settings=conf,
            login=login,
            initial_streaming=True,
            metrics_host=None,
            metrics_url=metrics_url,
        )
        registry, op = build(options)
        stop, ready = threading.Event(), threading.Event()

        def target() -> None:
            asyncio.run(
                kopf.operator(registry=registry, clusterwide=True, stop_flag=stop, ready_flag=ready)
            )

        thread = threading.Thread(target=target, name="operator", daemon=True)
        thread.start()
        try:
            assert await asyncio.to_thread(ready.wait, 10), "the operator did not start"
            yield Cluster(api), op, conf, store
        finally:
            stop.set()
            await eventually(lambda: op.closed or not thread.is_alive(), 15, "operator cleanup")


def write_results(name: str, payload: Mapping[str, Any]) -> Path:
    """bench/results/NAME.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
