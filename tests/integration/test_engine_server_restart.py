"""The engine server restarts between a source's staging and its build: the build finishes
with no user action.

The whole operator on kmock; the real engine server on a fixed port (its Service); the source
and build Jobs' containers run for real as rendered (pod_runner): the source Job streams a
tiny ONNX model from the tenant's claim to the engine server, the build Job reads it back,
builds, and publishes into the store. The engine server is stopped and started again on the
same port after the staging, as a node drain replaces its pod:

- with the inbox on an emptyDir (a new, empty folder), the build Job finds no source
  (`SourceNotStaged`); the operator runs the source Job again (a SourceRestaged Event) and the
  build again, which succeeds;
- with the inbox on a volume that survives (the same folder), the build reads the source the
  first server kept and succeeds at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelops_builder.triton_local import free_port
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import build_job_name, source_job_name
from modelops_operator.settings import Settings
from tests.support.builder_cases import save_model
from tests.support.engine_store import TEST_MAC_KEY, TEST_TRANSFER_KEY, engine_server
from tests.support.job_runner import run_job
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import RunOperator, condition, key_of
from tests.support.torch_models import tiny_models

NAME, TENANT_CLAIM = "mlp", "models"
STAGING = "modelops.dev/staging"


class Server:
    """The engine server's pod: started, stopped, started again on the same port."""

    def __init__(self, store: Path, port: int) -> None:
        self.store, self.port = store, port
        self._stack: contextlib.AsyncExitStack | None = None

    async def start(self, inbox: Path) -> str:
        self._stack = contextlib.AsyncExitStack()
        return await self._stack.enter_async_context(
            engine_server(self.store, inbox, port=self.port)
        )

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None


@contextlib.asynccontextmanager
async def engine_server_pod(store: Path, inbox: Path) -> AsyncIterator[tuple[Server, str]]:
    server = Server(store, free_port())
    url = await server.start(inbox)
    try:
        yield server, url
    finally:
        await server.stop()


def staging(cluster: Cluster, name: str, namespace: str) -> str | None:
    job = cluster.get(r.JOBS, name, namespace)
    return None if job is None else job["metadata"]["annotations"].get(STAGING)


@pytest.mark.parametrize("inbox", ["emptyDir", "persistent"])
async def test_a_restarted_engine_server_never_fails_a_build(
    cluster: Cluster,
    settings: Settings,
    store: Path,
    run_operator: RunOperator,
    tmp_path: Path,
    inbox: str,
) -> None:
    claim = tmp_path / "claims" / TENANT_CLAIM
    path, sha = save_model(tiny_models()["mlp"], "onnx", claim)
    secrets = {settings.store_key_secret: {"mac": TEST_MAC_KEY, "transfer": TEST_TRANSFER_KEY}}
    source_volumes = {"tmp": tmp_path / "source-tmp", "source": claim}
    build_volumes = {
        "tmp": tmp_path / "tmp",
        "publish-tmp": tmp_path / "publish-tmp",
        "output": tmp_path / "output",
        "store": store,
    }
    async with engine_server_pod(store, tmp_path / "inbox-1") as (server, url):
        routed = settings.model_copy(update={"store_server": url})
        async with run_operator(settings=routed):
            spec: dict[str, Any] = {
                "model": {"source": {"uri": f"pvc://{TENANT_CLAIM}/{path.name}", "sha256": sha}},
                "build": {"engine": "onnxruntime", "maxBatchSize": 8},
                "serving": {"replicas": 1},
                "rollout": {"strategy": "Recreate", "traffic": {"mode": "Replicas"}},
            }
            await cluster.create_md(NAME, spec)
            key = key_of(cluster, NAME, routed)
            source, build = source_job_name(NAME, key), build_job_name("default", NAME, key)
            build_ns = routed.operator_namespace
            staged = await run_job(cluster, source, "default", source_volumes, tmp_path, secrets)
            assert staged[-1].returncode == 0, staged[-1].stderr
            await eventually(lambda: cluster.get(r.JOBS, build, build_ns), 20, "the build Job")
            # The engine server's pod is replaced (a drain, an upgrade, an eviction).
            await server.stop()
            kept = inbox == "persistent"
            await server.start(tmp_path / ("inbox-1" if kept else "inbox-2"))
            ran = await run_job(cluster, build, build_ns, build_volumes, tmp_path, secrets)
            if kept:
                assert [r.returncode for r in ran] == [0, 0], ran[-1].stderr
            else:
                assert ran[-1].returncode != 0
                assert "SourceNotStaged" in ran[-1].message
                # No user action: the source Job of staging 1, then the build Job of staging 1.
                await eventually(
                    lambda: staging(cluster, source, "default") == "1", 20, "the source again"
                )
                again = await run_job(cluster, source, "default", source_volumes, tmp_path, secrets)
                assert again[-1].returncode == 0, again[-1].stderr
                await eventually(
                    lambda: staging(cluster, build, build_ns) == "1", 20, "the build again"
                )
                rebuilt = await run_job(cluster, build, build_ns, build_volumes, tmp_path, secrets)
                assert [r.returncode for r in rebuilt] == [0, 0], rebuilt[-1].stderr
            await eventually(
                lambda: condition(cluster, NAME, "EngineBuilt").get("status") == "True",
                30,
                "EngineBuilt",
            )
    reasons = [e.get("reason") for e in cluster.events(NAME)]
    assert "BuildFailed" not in reasons
    assert reasons.count("SourceRestaged") == (0 if kept else 1)
    assert condition(cluster, NAME, "Degraded").get("status") != "True"
    assert cluster.md(NAME)["status"]["phase"] not in ("Failed", "Degraded")
