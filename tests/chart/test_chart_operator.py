"""The operator Deployment: image, env (exactly the settings the operator reads), probes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelops_operator.settings import Settings
from tests.support.chart import (
    CASE_IDS,
    CHART,
    FULLNAME,
    NAMESPACE,
    VALUES_CASES,
    Helm,
    Manifest,
    app_version,
    env_of,
    find,
    image_ref,
    load_values,
    one,
    operator_container,
    secret_value,
)


# --- the operator Deployment -------------------------------------------------------------------
def test_operator_deployment(rendered: tuple[str, list[Manifest]]) -> None:
    name, manifests = rendered
    values = load_values(dict(VALUES_CASES)[name])
    deployment = one(manifests, "Deployment", FULLNAME)
    spec = deployment["spec"]
    assert spec["replicas"] == 2, "two replicas: one holds the Lease, one stands by"
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    pdb = one(manifests, "PodDisruptionBudget", FULLNAME)
    assert pdb["spec"] == {"minAvailable": 1, "selector": spec["selector"]}
    env = env_of(operator_container(manifests))
    assert env["MODELOPS_LEASE_NAMESPACE"] == NAMESPACE
    assert env["MODELOPS_LEASE_NAME"] == FULLNAME
    assert env["MODELOPS_LEADER_ELECTION"] == "true"
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    container = operator_container(manifests)
    assert container["args"] == ["operator"]
    port = values["operator"]["metricsPort"]
    expected_port = {"name": "http-metrics", "containerPort": port, "protocol": "TCP"}
    assert container["ports"] == [expected_port]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert container["resources"] == values["operator"]["resources"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["image"] == image_ref(values["images"]["operator"], app_version())
    # A writable /tmp on the read-only root; the store mounted read-only when it is a PVC.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    store = values["store"]
    if store["s3"]["uri"]:
        assert store["mountPath"] not in mounts
        assert not any("persistentVolumeClaim" in v for v in volumes.values())
        assert container["envFrom"] == [{"secretRef": {"name": store["s3"]["secretName"]}}]
    else:
        mount = mounts[store["mountPath"]]
        assert mount["readOnly"] is True
        claim = volumes[mount["name"]]["persistentVolumeClaim"]
        assert claim == {"claimName": store["pvc"]["name"], "readOnly": True}
        assert "envFrom" not in container
        pvcs = find(manifests, "PersistentVolumeClaim")
        if store["pvc"]["create"]:
            assert [p["metadata"]["name"] for p in pvcs] == [store["pvc"]["name"]]
            pvc_spec = one(manifests, "PersistentVolumeClaim")["spec"]
            assert pvc_spec["accessModes"] == store["pvc"]["accessModes"]
            assert pvc_spec["resources"]["requests"]["storage"] == store["pvc"]["size"]
        else:
            assert pvcs == []
    # Only the operator pod gets an API token, and it asks for it.
    assert pod["automountServiceAccountToken"] is True
    for account in find(manifests, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize(("name", "files"), VALUES_CASES, ids=CASE_IDS)
def test_env_is_what_the_operator_reads(
    helm: Helm, monkeypatch: pytest.MonkeyPatch, name: str, files: list[Path]
) -> None:
    """Every MODELOPS_* variable is a Settings field, and Settings parses the chart's env into
    exactly the values asked for."""
    values = load_values(files)
    env = env_of(operator_container(helm.template(files)))
    fields = {f"MODELOPS_{field.upper()}" for field in Settings.model_fields}
    assert set(env) <= fields, f"not read by the operator: {set(env) - fields}"
    for key in list(os.environ):
        if key.startswith("MODELOPS_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    expected_ns = [] if values["clusterWide"] else (values["watchNamespaces"] or [NAMESPACE])
    assert settings.namespaces == expected_ns
    version = app_version()
    assert settings.builder_image == image_ref(values["images"]["builder"], version)
    assert settings.triton_image == image_ref(values["images"]["triton"], version)
    assert settings.default_triton_resources == values["triton"]["defaultResources"]
    assert settings.store_mount_path == values["store"]["mountPath"]
    if values["store"]["s3"]["uri"]:
        assert settings.store_uri == values["store"]["s3"]["uri"]
        assert settings.store_secret == (values["store"]["s3"]["secretName"] or None)
        assert "MODELOPS_STORE_PVC" not in env
    else:
        assert settings.store_pvc == values["store"]["pvc"]["name"]
        assert settings.store_uri is None
    assert settings.metrics_port == values["operator"]["metricsPort"]
    assert settings.log_format == values["operator"]["logFormat"]
    assert settings.prometheus_url == (values["operator"]["prometheusUrl"] or None)
    assert settings.build_backoff_limit == values["build"]["backoffLimit"]
    assert settings.build_deadline_seconds == values["build"]["deadlineSeconds"]
    assert settings.tensorrt_version == values["tensorrt"]["version"]
    assert settings.triton_startup_seconds == values["triton"]["startupSeconds"]
    assert settings.onnx_serving_backend == values["triton"]["onnxServingBackend"]
    assert settings.build_ttl_seconds == values["build"]["ttlSecondsAfterFinished"]
    assert settings.stuck_seconds == values["build"]["stuckSeconds"]
    # Build Jobs run beside the operator, its store, its keys and its engine server.
    assert settings.operator_namespace == NAMESPACE
    port = values["store"]["server"]["port"]
    assert settings.store_server == f"http://{FULLNAME}-store.{NAMESPACE}.svc:{port}"
    secret = values["store"]["keySecret"]["name"] or f"{FULLNAME}-store-key"
    assert settings.store_key_secret == secret
    assert env["MODELOPS_STORE_MAC_KEY"] == secret_value(secret, "mac")
    assert env["MODELOPS_TRANSFER_KEY"] == secret_value(secret, "transfer")
    op = values["operator"]
    assert settings.reconcile_interval_seconds == op["reconcileIntervalSeconds"]
    assert settings.metrics_interval_seconds == op["metricsIntervalSeconds"]
    assert settings.metrics_stale_seconds == op["metricsStaleSeconds"]


def test_every_setting_is_passed_by_some_values(helm: Helm) -> None:
    names: set[str] = set()
    for _, files in VALUES_CASES:
        names |= set(env_of(operator_container(helm.template(files))))
    fields = {f"MODELOPS_{field.upper()}" for field in Settings.model_fields}
    assert names == fields, f"settings the chart never passes: {fields - names}"


def _lease(manifest: Manifest) -> bool:
    return str(manifest["metadata"]["name"]).endswith("-leader-election")


def test_watch_namespaces_get_roles_and_env(helm: Helm) -> None:
    manifests = helm.template(values={"watchNamespaces": ["ml-a", "ml-b"]})
    assert env_of(operator_container(manifests))["MODELOPS_NAMESPACES"] == "ml-a,ml-b"
    roles = {m["metadata"]["namespace"] for m in find(manifests, "Role") if not _lease(m)}
    bindings = {m["metadata"]["namespace"] for m in find(manifests, "RoleBinding") if not _lease(m)}
    # The release namespace too: build Jobs run there.
    assert roles == bindings == {"ml-a", "ml-b", NAMESPACE}
    assert len(find(manifests, "ClusterRole")) == 1  # discovery only


def test_metrics_service_targets_the_operator(helm: Helm) -> None:
    manifests = helm.template()
    service = one(manifests, "Service", f"{FULLNAME}-metrics")
    pod_labels = one(manifests, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"
    without_metrics = helm.template(values={"metrics": {"service": {"enabled": False}}})
    # The route feed the routers long-poll stays: traffic depends on it, scraping does not.
    assert sorted(s["metadata"]["name"] for s in find(without_metrics, "Service")) == [
        f"{FULLNAME}-routes",
        f"{FULLNAME}-store",
    ]


def test_routes_service_is_the_url_the_operator_hands_to_routers(helm: Helm) -> None:
    manifests = helm.template()
    service = one(manifests, "Service", f"{FULLNAME}-routes")
    pod_labels = one(manifests, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port = service["spec"]["ports"][0]["port"]
    url = env_of(operator_container(manifests))["MODELOPS_ROUTES_URL"]
    assert url == f"http://{FULLNAME}-routes.{service['metadata']['namespace']}.svc:{port}"


def test_network_policy_selects_the_operator(helm: Helm) -> None:
    files = [CHART / "ci" / "networkpolicy-servicemonitor-values.yaml"]
    manifests = helm.template(files)
    policy = one(manifests, "NetworkPolicy", FULLNAME)
    pod_labels = one(manifests, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 443, 6443, 8002, 8405} <= egress_ports
    values = load_values(files)["networkPolicy"]
    router_from = policy["spec"]["ingress"][0]["from"][0]
    assert router_from["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "modelops-router",
        "app.kubernetes.io/managed-by": "modelops",
    }
    assert router_from["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}
    }
    assert policy["spec"]["ingress"][1]["from"] == values["metricsFrom"]
    assert policy["spec"]["egress"][-1] == values["extraEgress"][0]
