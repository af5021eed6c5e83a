"""Shared by bench_rollback.py and bench_scale.py: kmock + the whole operator + real Tritons.

The operator runs in its own thread and event loop (as in tests/integration/conftest.py); the
benchmark plays the cluster's controllers through tests/integration/kmock_support.py.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import kmock

from modelops_operator.handlers import Operator, OperatorOptions
from modelops_operator.settings import Settings
from tests.support.apiserver import FaithfulEmulator
from tests.support.engine_store import TEST_MAC_KEY, TEST_TRANSFER_KEY
from tests.support.kubernetes_emulator import (
    Cluster,
    declare_resources,
    emulator_login,
    operator_in_thread,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@contextlib.asynccontextmanager
async def running_operator(
    metrics_url: Callable[[Mapping[str, Any]], str], **settings: Any
) -> AsyncIterator[tuple[Cluster, Operator, Settings, Path]]:
    """kmock on loopback and the operator against it; yields (cluster, op, settings, store)."""
    store = Path(tempfile.mkdtemp(prefix="modelops-bench-store-"))
    conf = Settings(
        store_mount_path=str(store),
        store_mac_key=TEST_MAC_KEY,
        transfer_key=TEST_TRANSFER_KEY,
        reconcile_interval_seconds=60.0,
        log_format="plain",
        **settings,
    )
    async with FaithfulEmulator() as api, kmock.Server(api):
        declare_resources(api)
        options = OperatorOptions(
            settings=conf,
            login=emulator_login(str(api.url)),
            metrics_host=None,
            metrics_url=metrics_url,
        )
        async with operator_in_thread(options) as op:
            yield Cluster(api), op, conf, store


def write_results(name: str, payload: Mapping[str, Any]) -> Path:
    """bench/results/NAME.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
