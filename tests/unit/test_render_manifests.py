"""The revision ConfigMap + Deployment and the Service, field by field (Jobs:
test_render_jobs.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from modelops_contract.manifest import EngineManifest
from modelops_operator.render.haproxy import RouterConfig, render_haproxy_config
from modelops_operator.render.revision import render_revision, serving_hash
from modelops_operator.render.service import render_service
from modelops_operator.settings import Settings
from tests.support.render_cases import KEY, UID, make_md

PVC = Settings(store_pvc="engines", triton_startup_seconds=900)
S3 = Settings(store_pvc=None, store_uri="s3://engines/store", store_secret="store-creds")


def manifest(engine: str = "tensorrt", backend: str = "tensorrt_plan") -> EngineManifest:
    return EngineManifest.model_validate(
        {
            "key": KEY,
            "engine": engine,
            "precision": "fp16",
            "servingBackend": backend,
            "modelName": "model",
            "modelFile": "model.plan" if engine == "tensorrt" else "model.onnx",
            "inputs": [{"name": "input", "dataType": "FP32", "dims": [16]}],
            "outputs": [{"name": "logits", "dataType": "FP32", "dims": [4]}],
            "maxBatchSize": 8,
            "optBatchSize": 4,
            "sourceSha256": "cd" * 32,
            "format": "onnx",
            "createdAt": "2025-01-01T00:00:00Z",
        }
    )


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


# --- revision --------------------------------------------------------------------------------
def test_revision_configmap_holds_the_triton_config() -> None:
    configmap, deployment = render_revision(make_md(), 2, manifest(), PVC)
    assert configmap["kind"] == "ConfigMap"
    assert deployment["kind"] == "Deployment"
    assert configmap["metadata"]["name"] == deployment["metadata"]["name"] == "bert-r2"
    config = configmap["data"]["config.pbtxt"]
    assert 'name: "bert"' in config
    assert 'platform: "tensorrt_plan"' in config
    assert "KIND_GPU" in config


def test_onnxruntime_revision_follows_the_operator_backend() -> None:
    md = make_md(build={"engine": "onnxruntime"})
    python = Settings(store_pvc="engines", onnx_serving_backend="python")
    configmap, deployment = render_revision(md, 1, manifest("onnxruntime", "python"), python)
    assert 'backend: "python"' in configmap["data"]["config.pbtxt"]
    assert "nodeSelector" not in pod(deployment)


def test_revision_deployment_runs_triton() -> None:
    _, dep = render_revision(make_md(), 2, manifest(), PVC, replicas=1)
    assert dep["spec"]["replicas"] == 1
    meta = dep["metadata"]
    assert meta["annotations"]["modelops.dev/generation"] == "4"
    assert meta["annotations"]["modelops.dev/engine-key"] == KEY
    assert meta["annotations"]["modelops.dev/serving-hash"] == serving_hash(make_md().spec, PVC)
    assert meta["labels"]["modelops.dev/revision"] == "2"
    assert dep["spec"]["selector"]["matchLabels"] == {
        "modelops.dev/deployment": "bert",
        "modelops.dev/revision": "2",
    }
    spec = pod(dep)
    (triton,) = spec["containers"]
    assert triton["command"] == ["tritonserver"]
    for arg in (
        "--model-repository=/models",
        "--model-control-mode=none",
        "--metrics-port=8002",
        "--allow-metrics=true",
        "--metrics-config=summary_latencies=true",
        "--exit-timeout-secs=30",
    ):
        assert arg in triton["args"]
    assert spec["terminationGracePeriodSeconds"] > 30
    assert [(p["name"], p["containerPort"]) for p in triton["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    ]
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900
    # Ready within a second of Triton's own readiness: a wake from zero and every rollout step
    # wait for it (a 10 s startup period cost up to 10 s each time).
    assert (startup["periodSeconds"], triton["readinessProbe"]["periodSeconds"]) == (1, 1)
    mounts = {m["mountPath"]: m for m in triton["volumeMounts"]}
    engine = mounts["/models/bert/1"]
    assert engine == {"name": "engine", "mountPath": "/models/bert/1", "readOnly": True}
    assert mounts["/models/bert/config.pbtxt"]["subPath"] == "config.pbtxt"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert triton["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"},
    }
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8002"
    assert spec["automountServiceAccountToken"] is False


def test_revision_uses_spec_resources() -> None:
    md = make_md(serving={"resources": {"limits": {"nvidia.com/gpu": 2, "memory": "16Gi"}}})
    _, dep = render_revision(md, 1, manifest(), PVC)
    assert pod(dep)["containers"][0]["resources"] == {
        "limits": {"memory": "16Gi", "nvidia.com/gpu": "2"}
    }


@pytest.mark.parametrize("settings", [PVC, S3], ids=["pvc", "s3"])
def test_revision_pulls_the_engine_from_the_engine_server_pinned(settings: Settings) -> None:
    """Whatever the store, the pod holds neither it nor its credentials: the engine server, the
    entry's token and the engine.json digest the operator verified."""
    pinned = "ef" * 32
    _, dep = render_revision(make_md(), 1, manifest(), settings, manifest_sha256=pinned)
    spec = pod(dep)
    (pull,) = spec["initContainers"]
    args = pull["args"]
    assert args[0] == "pull"
    assert args[args.index("--server") + 1] == settings.store_server
    assert args[args.index("--manifest-sha256") + 1] == pinned
    assert args[args.index("--key") + 1] == KEY
    assert "envFrom" not in pull
    assert dep["metadata"]["annotations"]["modelops.dev/manifest-sha256"] == pinned
    assert {"name": "engine", "emptyDir": {}} in spec["volumes"]
    assert all("persistentVolumeClaim" not in v for v in spec["volumes"])
    assert "store-creds" not in json.dumps(dep)


@pytest.mark.parametrize(
    ("change", "same"),
    [
        ({"serving": {"replicas": 9}}, True),
        ({"serving": {"replicas": 3, "instancesPerReplica": 2}}, False),
        ({"serving": {"replicas": 3, "dynamicBatching": {"maxQueueDelayMicroseconds": 7}}}, False),
    ],
)
def test_serving_hash_ignores_only_replicas(change: dict[str, Any], same: bool) -> None:
    assert (serving_hash(make_md(**change).spec, PVC) == serving_hash(make_md().spec, PVC)) is same


# --- Service ---------------------------------------------------------------------------------
def test_service_selects_every_revision() -> None:
    svc = render_service(make_md())
    assert svc["metadata"]["name"] == "bert"
    assert svc["spec"]["selector"] == {
        "modelops.dev/deployment": "bert",
        "app.kubernetes.io/name": "triton",
    }
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    ]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == UID


@pytest.mark.parametrize("drain", [0, 1, 5, 60])
def test_triton_pods_drain_before_sigterm_within_their_grace_period(drain: int) -> None:
    settings = PVC.model_copy(update={"drain_seconds": drain})
    objects = render_revision(make_md(), 2, manifest(), settings)
    dep = next(o for o in objects if o["kind"] == "Deployment")
    spec = pod(dep)
    (triton,) = spec["containers"]
    exit_timeout = next(
        int(arg.split("=")[1]) for arg in triton["args"] if arg.startswith("--exit-timeout-secs=")
    )
    if drain == 0:
        assert "lifecycle" not in triton
    else:
        # Triton's image has `sleep`; the kubelet sends SIGTERM only once it returns.
        assert triton["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", str(drain)]}}}
    # SIGKILL comes only after the drain and Triton's own exit timeout have both run out.
    assert spec["terminationGracePeriodSeconds"] > drain + exit_timeout


def test_finding_7_triton_admin_apis_need_each_deployments_own_key() -> None:
    """Fixed vector: the key is the HMAC of triton-admin:<namespace>/<name> (transfer key)."""
    keyed = Settings(store_pvc="engines", transfer_key="t" * 48)
    expected = hmac.new(b"t" * 48, b"triton-admin:ml/bert", hashlib.sha256).hexdigest()
    _, deployment = render_revision(make_md(), 2, manifest(), keyed)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    rule = f"model-repository,shared-memory,trace,logging:modelops-triton-admin={expected}"
    assert f"--http-restricted-api={rule}" in args
    assert f"--grpc-restricted-protocol={rule}" in args
    other = make_md()
    other.metadata.name = "gpt"
    _, theirs = render_revision(other, 2, manifest(), keyed)
    assert expected not in json.dumps(theirs)
    # Every client-facing frontend drops both spellings of the key before routing.
    config = render_haproxy_config(RouterConfig())
    for frontend in ("http", "grpc", "metrics"):
        block = config.split(f"frontend {frontend}\n", 1)[1].split("\n\n", 1)[0]
        assert "http-request del-header modelops-triton-admin" in block
        assert "http-request del-header triton-grpc-protocol-modelops-triton-admin" in block
