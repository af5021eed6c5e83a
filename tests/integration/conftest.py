"""Fixtures of the operator tests: kmock's API server, a test-only login, a running operator."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

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
from tests.support.operator_flow import RunOperator
from tests.support.server_shapes import shape_write

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "modeldeployments.modelops.dev.yaml"


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    """The generated CRD, for reference (kmock enforces no schema)."""
    loaded: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    return loaded


@pytest.fixture
async def api(crd: dict[str, Any]) -> AsyncIterator[kmock.KubernetesEmulator]:
    """A KubernetesEmulator on 127.0.0.1 with every resource declared (kmock declares none),
    with resourceVersions, preconditions and label selectors as a real API server has them,
    and objects shaped as it returns them (managedFields, defaulted specs)."""
    async with FaithfulEmulator() as emulator, kmock.Server(emulator):
        declare_resources(emulator)
        emulator.shape = shape_write
        yield emulator


@pytest.fixture
def cluster(api: kmock.KubernetesEmulator) -> Cluster:
    """Test-side reads and writes against the emulator."""
    return Cluster(api)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """An empty engine store folder."""
    path = tmp_path / "engines"
    path.mkdir()
    return path


@pytest.fixture
def settings(store: Path) -> Settings:
    """Settings pointing at the temp store; a short safety-net interval."""
    return Settings(
        store_mount_path=str(store),
        store_mac_key=TEST_MAC_KEY,
        transfer_key=TEST_TRANSFER_KEY,
        reconcile_interval_seconds=60.0,
        namespaces=[],
        log_format="plain",
    )


@pytest.fixture
def run_operator(api: kmock.KubernetesEmulator, settings: Settings) -> RunOperator:
    """`async with run_operator() as op:` a whole kopf operator in this event loop."""

    @contextlib.asynccontextmanager
    async def running(**overrides: Any) -> AsyncIterator[Operator]:
        # Production's watch mode (LIST, then WATCH from its resourceVersion) unless a test
        # asks for Kubernetes 1.34's streaming lists.
        streaming = overrides.pop("initial_streaming", False)
        namespaced = bool(overrides.pop("namespaced", False))
        options = OperatorOptions(
            settings=overrides.pop("settings", settings),
            login=emulator_login(str(api.url)),
            metrics_host=overrides.pop("metrics_host", None),
            metrics_port=overrides.pop("metrics_port", 0),
            **overrides,
        )
        async with operator_in_thread(
            options, initial_streaming=streaming, namespaced=namespaced
        ) as op:
            yield op

    return running


@pytest.fixture
async def operator(run_operator: RunOperator) -> AsyncIterator[Operator]:
    """One operator running for the whole test."""
    async with run_operator() as op:
        yield op
