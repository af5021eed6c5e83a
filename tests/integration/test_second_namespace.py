"""A ModelDeployment in a namespace other than the release's, from build to serving, with only
what the chart created: the chart (real helm) installed into the emulated cluster, the operator
with its chart-rendered Settings and the Secret the chart made, the real engine server, and
every container the operator renders run as rendered (pod_runner): the source Job in the
tenant's namespace, the build Job's two steps in the release's, the Triton pod's pull, the
real tritonserver on what it pulled, and the validation Job against it. The test plays only
the controllers (Job and Deployment status) and the scheduler (pod IPs).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelops_builder.triton_local import TritonProcess, start_triton
from modelops_contract.validation import ValidationRequest
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import (
    build_job_name,
    revision_name,
    source_job_name,
    validation_job_name,
)
from modelops_operator.render.revision import PULL_CONTAINER
from tests.support import job_runner
from tests.support.builder_cases import save_model
from tests.support.chart import Helm
from tests.support.chart_cluster import (
    PVCS,
    Installed,
    create,
    declare_chart_resources,
    helm_install,
    missing_references,
)
from tests.support.engine_store import engine_server
from tests.support.job_runner import finish
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import RunOperator, key_of, phase
from tests.support.pod_runner import Ran, pod_containers, run_container
from tests.support.router_pod import router_pod
from tests.support.torch_models import tiny_models

pytestmark = pytest.mark.triton

REPO = Path(__file__).resolve().parents[2]
RELEASE, SYSTEM, TENANT, NAME = "modelops", "modelops-system", "team-a", "mlp"
POD_IP = "10.42.0.7"


@pytest.fixture
def helm() -> Helm:
    binary = REPO / ".tools" / "bin" / "helm"
    if not binary.exists():
        pytest.skip("helm not found: run `bash hack/install-helm.sh`")
    return Helm(binary)


async def run_job(
    cluster: Cluster,
    name: str,
    namespace: str,
    volumes: dict[str, Path],
    workdir: Path,
    secrets: dict[str, dict[str, str]],
) -> list[Ran]:
    """The Job's pod run for real, once its pod names only what exists in its namespace."""
    await eventually(lambda: cluster.get(r.JOBS, name, namespace), 20, f"Job {name}")
    job = cluster.get(r.JOBS, name, namespace)
    assert job is not None
    assert missing_references(job["spec"]["template"]["spec"], namespace, cluster) == [], name
    return await job_runner.run_job(cluster, name, namespace, volumes, workdir, secrets)


@pytest.fixture
async def serving(tmp_path: Path) -> AsyncIterator[dict[str, TritonProcess]]:
    """Where the test keeps the tritonserver it starts (stopped at the end)."""
    servers: dict[str, TritonProcess] = {}
    yield servers
    for server in servers.values():
        await asyncio.to_thread(server.stop, 10.0)


async def start_pod(
    cluster: Cluster, workdir: Path, servers: dict[str, TritonProcess]
) -> TritonProcess:
    """The revision's pod: its pull init container as rendered, then tritonserver on the
    pulled version dir with the revision's config.pbtxt (its ConfigMap)."""
    deployment_name = revision_name(NAME, 1)
    await eventually(lambda: cluster.get(r.DEPLOYMENTS, deployment_name, TENANT), 20, "r1")
    deployment = cluster.get(r.DEPLOYMENTS, deployment_name, TENANT)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    assert missing_references(pod, TENANT, cluster) == []
    engine = workdir / "pod" / "engine"
    pull = pod_containers(deployment)[PULL_CONTAINER]
    ran = await asyncio.to_thread(
        run_container, pull, {"engine": engine, "tmp": workdir / "pod" / "tmp"}, workdir
    )
    assert ran.returncode == 0, ran.stderr
    configmap = cluster.get(r.CONFIGMAPS, deployment_name, TENANT)
    assert configmap is not None
    repository = workdir / "repository"
    shutil.copytree(engine, repository / NAME / "1")
    (repository / NAME / "config.pbtxt").write_text(configmap["data"]["config.pbtxt"])
    server = await asyncio.to_thread(start_triton, repository)
    servers["r1"] = server
    await cluster.add_pod(deployment_name, POD_IP, namespace=TENANT)
    await cluster.ready_deployment(deployment_name, TENANT)
    return server


async def validate(cluster: Cluster, server: TritonProcess, workdir: Path) -> Ran:
    """The validation Job as rendered, its target (the pod's IP) reached on loopback."""
    job_name = validation_job_name(NAME, 1)
    await eventually(lambda: cluster.get(r.JOBS, job_name, TENANT), 20, "validation Job")
    job = cluster.get(r.JOBS, job_name, TENANT)
    assert job is not None
    assert missing_references(job["spec"]["template"]["spec"], TENANT, cluster) == []
    (container,) = pod_containers(job).values()
    args = list(container["args"])
    request = ValidationRequest.model_validate_json(args[args.index("--request") + 1])
    assert request.targets == [f"{POD_IP}:8001"]
    local = request.model_copy(update={"targets": [server.grpc_url]})
    args[args.index("--request") + 1] = local.model_dump_json(by_alias=True)
    ran = await asyncio.to_thread(
        run_container, {**container, "args": args}, {"tmp": workdir / "validate"}, workdir
    )
    await finish(cluster, job_name, TENANT, ran)
    return ran


def infer(server: TritonProcess, x: np.ndarray) -> np.ndarray:
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{server.http_url}/v2/models/{NAME}/infer", data=body, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        out = json.loads(response.read())["outputs"][0]
    return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


async def install(api: Any, cluster: Cluster, helm: Helm) -> Installed:
    declare_chart_resources(api)
    return await helm_install(
        helm,
        cluster,
        RELEASE,
        SYSTEM,
        f"watchNamespaces={{{TENANT}}}",
        # The CPU Triton of the tests serves ONNX Runtime engines through the python backend.
        "triton.onnxServingBackend=python",
    )


async def test_a_second_namespace_builds_and_serves_with_only_what_the_chart_created(
    api: Any,
    cluster: Cluster,
    helm: Helm,
    run_operator: RunOperator,
    tmp_path: Path,
    serving: dict[str, TritonProcess],
) -> None:
    installed = await install(api, cluster, helm)
    secrets = installed.secrets()
    keys = secrets[installed.operator_settings().store_key_secret]
    # The tenant's own model, on the tenant's own claim (nothing of the store in its namespace).
    model = tiny_models()["mlp"]
    claim = tmp_path / "claims" / "models"
    path, sha = save_model(model, "onnx", claim)
    await create(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "models"},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        TENANT,
    )
    assert cluster.get(PVCS, "modelops-engines", TENANT) is None, "no store claim for tenants"
    store = tmp_path / "store"  # the chart's claim modelops-engines, in modelops-system
    async with engine_server(store, tmp_path / "inbox", transfer_key=keys["transfer"]) as url:
        settings = installed.operator_settings(
            store_mount_path=str(store),
            store_server=url,  # the chart's Service, reached on loopback
            reconcile_interval_seconds=60.0,
            log_format="plain",
        )
        async with (
            router_pod(cluster, NAME, TENANT, tmp_path, settings) as router,
            run_operator(**router.operator_options()),
        ):
            spec = {
                "model": {"source": {"uri": f"pvc://models/{path.name}", "sha256": sha}},
                "build": {"engine": "onnxruntime", "maxBatchSize": 8},
                "serving": {"replicas": 1},
                "rollout": {"strategy": "Recreate"},
            }
            await cluster.create_md(NAME, spec, TENANT)
            key = key_of(cluster, NAME, settings, TENANT)
            source = await run_job(
                cluster,
                source_job_name(NAME, key),
                TENANT,
                {"tmp": tmp_path / "source-tmp", "source": claim},
                tmp_path,
                {},
            )
            assert source[-1].returncode == 0, source[-1].stderr
            steps = await run_job(
                cluster,
                build_job_name(TENANT, NAME, key),
                SYSTEM,
                {
                    "tmp": tmp_path / "tmp",
                    "publish-tmp": tmp_path / "publish-tmp",
                    "output": tmp_path / "output",
                    "store": store,
                },
                tmp_path,
                secrets,
            )
            assert [s.returncode for s in steps] == [0, 0], steps[-1].stderr
            server = await start_pod(cluster, tmp_path, serving)
            checked = await validate(cluster, server, tmp_path)
            assert checked.returncode == 0, checked.message
            await eventually(lambda: phase(cluster, NAME, TENANT) == "Ready", 30, "Ready")
    status = cluster.md(NAME, TENANT)["status"]
    assert status["validation"]["passed"] is True
    assert status["sourceAccess"]["sha256"] == sha
    assert status["engine"]["key"] == key
    feeds = model.sample(3, seed=5)
    np.testing.assert_allclose(
        infer(server, feeds["x"]), model.reference(feeds)["y"], atol=1e-5, rtol=1e-4
    )
