"""The build Job, the revision ConfigMap + Deployment and the Service, field by field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelops_contract.credentials import SOURCE_SECRET_KEYS
from modelops_contract.manifest import EngineManifest
from modelops_contract.request import BuildRequest
from modelops_operator.api import ModelDeployment
from modelops_operator.render.job import render_build_job
from modelops_operator.render.revision import render_revision, serving_hash
from modelops_operator.render.service import render_service
from modelops_operator.settings import Settings

KEY = "sha256:" + "ab" * 32
UID = "0f6c5a5e-1111-2222-3333-444455556666"
PVC = Settings(store_pvc="engines", triton_startup_seconds=900)
S3 = Settings(store_pvc=None, store_uri="s3://engines/store", store_secret="store-creds")


def make_md(**spec: Any) -> ModelDeployment:
    base: dict[str, Any] = {
        "model": {
            "source": {
                "uri": "s3://bucket/m.onnx",
                "sha256": "cd" * 32,
                "credentialsSecret": "s3-reader",
            }
        },
        "build": {"engine": "tensorrt", "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}},
        "serving": {"replicas": 3},
    }
    base.update(spec)
    return ModelDeployment.from_body(
        {
            "metadata": {"name": "bert", "namespace": "ml", "uid": UID, "generation": 4},
            "spec": base,
        }
    )


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


# --- Job -------------------------------------------------------------------------------------
def test_job_identity_owner_and_limits() -> None:
    job = render_build_job(make_md(), KEY, PVC)
    meta = job["metadata"]
    assert meta["name"] == "bert-build-ababababab"
    assert meta["namespace"] == "ml"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "modelops.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "bert",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert meta["labels"]["modelops.dev/deployment"] == "bert"
    assert meta["labels"]["modelops.dev/engine-key"] == "ab" * 20
    assert meta["annotations"]["modelops.dev/generation"] == "4"
    assert job["spec"]["backoffLimit"] == PVC.build_backoff_limit
    assert job["spec"]["activeDeadlineSeconds"] == PVC.build_deadline_seconds
    assert "ttlSecondsAfterFinished" not in job["spec"]
    # Build pods never match the Service or the /scale selector.
    assert "modelops.dev/deployment" not in job["spec"]["template"]["metadata"]["labels"]


def test_job_gpu_security_and_credentials() -> None:
    job = render_build_job(make_md(), KEY, PVC)
    spec = pod(job)
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    # The user's Secret: allow-listed keys only, under names only the fetch step reads.
    assert "envFrom" not in container
    refs = [e for e in container["env"] if "valueFrom" in e]
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in refs} == {
        f"MODELOPS_SOURCE_{k}": k for k in SOURCE_SECRET_KEYS
    }
    assert all(e["valueFrom"]["secretKeyRef"]["name"] == "s3-reader" for e in refs)
    assert all(e["valueFrom"]["secretKeyRef"]["optional"] is True for e in refs)
    assert "s3-reader" not in json.dumps(container["args"])
    assert {"name": "store", "persistentVolumeClaim": {"claimName": "engines"}} in spec["volumes"]


def test_job_request_round_trips_through_the_builder_model() -> None:
    job = render_build_job(make_md(), KEY, PVC)
    args = pod(job)["containers"][0]["args"]
    assert args[0] == "--request"
    request = BuildRequest.model_validate_json(args[1])
    assert request.engine_key == KEY
    assert request.engine == "tensorrt"
    assert request.gpu_product == "NVIDIA-H100-80GB-HBM3"
    assert request.store == PVC.store_mount_path
    assert request.sha256 == "cd" * 32


def test_job_for_onnxruntime_on_an_s3_store_has_no_gpu_and_store_env() -> None:
    md = make_md(build={"engine": "onnxruntime"})
    job = render_build_job(md, KEY, S3)
    spec = pod(job)
    assert "nodeSelector" not in spec
    (container,) = spec["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    assert BuildRequest.model_validate_json(container["args"][1]).store == "s3://engines/store"
    assert all("persistentVolumeClaim" not in v for v in spec["volumes"])


def test_a_tenant_secret_cannot_set_builder_or_store_variables() -> None:
    # Whatever keys the tenant's Secret holds (MODELOPS_TERMINATION_LOG, AWS_ENDPOINT_URL,
    # HTTPS_PROXY...), the Job names only allow-listed keys, each under MODELOPS_SOURCE_.
    job = render_build_job(make_md(build={"engine": "onnxruntime"}), KEY, S3)
    (container,) = pod(job)["containers"]
    from_user = [
        e
        for e in container["env"]
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "s3-reader"
    ]
    assert from_user
    assert all(e["name"].startswith("MODELOPS_SOURCE_") for e in from_user)
    assert {e["valueFrom"]["secretKeyRef"]["key"] for e in from_user} <= set(SOURCE_SECRET_KEYS)
    assert {"secretRef": {"name": "s3-reader"}} not in container.get("envFrom", [])
    plain = {e["name"] for e in container["env"] if "value" in e}
    assert plain.isdisjoint({"MODELOPS_TERMINATION_LOG", "MODELOPS_WORK_DIR"})


def test_job_mounts_a_pvc_source_read_only() -> None:
    md = make_md(model={"source": {"uri": "pvc://models/bert/m.onnx", "sha256": "cd" * 32}})
    spec = pod(render_build_job(md, KEY, PVC))
    assert {
        "name": "source",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in spec["volumes"]
    mounts = spec["containers"][0]["volumeMounts"]
    assert {"name": "source", "mountPath": "/mnt/pvc/models", "readOnly": True} in mounts


def test_job_is_idempotent() -> None:
    assert render_build_job(make_md(), KEY, PVC) == render_build_job(make_md(), KEY, PVC)


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
    mounts = {m["mountPath"]: m for m in triton["volumeMounts"]}
    engine = mounts["/models/bert/1"]
    assert engine["subPath"] == f"{'ab' * 32}/repository/model/1"
    assert engine["readOnly"] is True
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


def test_revision_on_an_s3_store_pulls_the_engine_first() -> None:
    _, dep = render_revision(make_md(), 1, manifest(), S3)
    spec = pod(dep)
    (pull,) = spec["initContainers"]
    assert pull["envFrom"] == [{"secretRef": {"name": "store-creds"}}]
    assert {"name": "engine", "emptyDir": {}} in spec["volumes"]


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


def test_the_build_jobs_scratch_space_is_bounded() -> None:
    """Two copies of the largest download plus overhead: evicted before it fills the node."""
    job = render_build_job(make_md(), KEY, PVC)
    spec = pod(job)
    (container,) = spec["containers"]
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"] == {"sizeLimit": "41Gi"}
    assert container["resources"]["requests"]["ephemeral-storage"] == "41Gi"
    assert container["resources"]["limits"]["ephemeral-storage"] == "41Gi"
