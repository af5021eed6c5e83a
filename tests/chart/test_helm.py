"""The Helm chart, rendered by the real helm binary (.tools/bin/helm from hack/install-helm.sh).

- `helm lint --strict` and `helm template` with the default values and every ci/*.yaml;
- every rendered manifest valid for Kubernetes (kubernetes_validate, strict) at the oldest and a
  recent supported version; the CRD identical to the generated one; examples valid against it;
- every pod (the chart's and the operator-rendered build Job / Triton Deployment) admitted by
  the Pod Security "restricted" profile (tests/chart/pss.py);
- RBAC: exactly the operator's REQUIRED_RULES, no wildcard, no Secret;
- values.schema.json: strict, documented, and rejecting bad values.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelops_operator.k8s.permissions import CLUSTER_SCOPED, REQUIRED_RULES, grants
from modelops_operator.settings import Settings
from tests.support.pod_security import pod_specs, restricted_violations

Manifest = dict[str, Any]
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelops"
RELEASE = "mo"
NAMESPACE = "modelops-system"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
VALUES_CASES: list[tuple[str, list[Path]]] = [
    ("default", []),
    *[(path.stem, [path]) for path in CI_VALUES],
]
CASE_IDS = [name for name, _ in VALUES_CASES]
# Chart.yaml kubeVersion ">=1.29": the oldest supported and a current release.
K8S_VERSIONS = ("1.29", "1.32")
CRD_FILE = REPO / "crds" / "modeldeployments.modelops.dev.yaml"
CRD_NAME = "modeldeployments.modelops.dev"
KEEP = "helm.sh/resource-policy"
FULLNAME = f"{RELEASE}-modelops"


# --- running helm ------------------------------------------------------------------------------
@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str


class Helm:
    """The real helm against the chart; renders are pure, so results are cached per arguments."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self._cache: dict[tuple[str, ...], HelmResult] = {}
        self._env = {
            **os.environ,
            "HELM_CACHE_HOME": str(Path(tempfile.gettempdir()) / "modelops-helm-cache"),
            "HELM_CONFIG_HOME": str(Path(tempfile.gettempdir()) / "modelops-helm-config"),
        }

    def run(self, *args: str) -> HelmResult:
        if args not in self._cache:
            proc = subprocess.run(
                [str(self.binary), *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env=self._env,
            )
            self._cache[args] = HelmResult(proc.returncode, proc.stdout, proc.stderr)
        return self._cache[args]

    @staticmethod
    def template_args(
        values_files: Iterable[Path] = (), values: dict[str, Any] | None = None
    ) -> tuple[str, ...]:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for path in values_files:
            args += ["--values", str(path)]
        # --set-json keeps types exactly: a string stays a string, 2 stays an integer.
        for key, value in _flatten(values or {}):
            args += ["--set-json", f"{key}={json.dumps(value)}"]
        return tuple(args)

    def template(
        self, values_files: Iterable[Path] = (), values: dict[str, Any] | None = None
    ) -> list[Manifest]:
        """The rendered manifests; fails the test when helm fails."""
        result = self.run(*self.template_args(values_files, values))
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        assert all(isinstance(doc, dict) for doc in docs)
        return docs

    def template_error(
        self, values_files: Iterable[Path] = (), values: dict[str, Any] | None = None
    ) -> str:
        """helm's error output; fails the test when helm renders."""
        result = self.run(*self.template_args(values_files, values))
        assert result.returncode != 0, f"helm accepted {values}:\n{result.stdout[:2000]}"
        return result.stderr


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """{'a': {'b': 1}} -> ('a.b', 1); lists, scalars and empty maps are leaves."""
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.fixture(scope="session")
def helm(helm_binary: Path) -> Helm:
    return Helm(helm_binary)


# --- the operator's API access: modelops_operator.k8s.permissions is the single source ---------
Grant = tuple[str, str, str]  # (apiGroup, resource, verb)


def expand(rules: Iterable[Any]) -> set[Grant]:
    """PolicyRule dicts -> every (group, resource, verb) they allow."""
    return set(grants(rules))


REQUIRED = expand(REQUIRED_RULES)
REQUIRED_CLUSTER = {g for g in REQUIRED if (g[0], g[1]) in CLUSTER_SCOPED}
REQUIRED_NAMESPACED = REQUIRED - REQUIRED_CLUSTER


# --- helpers -----------------------------------------------------------------------------------
def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        m
        for m in manifests
        if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)
    ]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def operator_container(manifests: list[Manifest]) -> Manifest:
    deployment = one(manifests, "Deployment", FULLNAME)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    container: Manifest = containers[0]
    return container


def env_of(container: Manifest) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        assert "value" in item, f"env {item['name']} must be a literal value"
        assert item["name"] not in env, f"env {item['name']} set twice"
        env[item["name"]] = item["value"]
    return env


def load_values(paths: list[Path]) -> dict[str, Any]:
    """Chart defaults overlaid with value files (Helm's deep merge of maps)."""

    def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
        for key, value in over.items():
            if isinstance(value, Mapping) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = copy.deepcopy(value)
        return base

    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in paths:
        merge(values, yaml.safe_load(path.read_text()) or {})
    return values


def image_ref(image: Mapping[str, str], app_version: str) -> str:
    ref = image["repository"]
    tag = image["tag"] or app_version
    ref += f":{tag}"
    if image["digest"]:
        ref += f"@{image['digest']}"
    return ref


def app_version() -> str:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return str(chart["appVersion"])


def grants_of(manifests: list[Manifest], kind: str) -> dict[tuple[str | None, str], set[Grant]]:
    """(namespace, name) of each Role/ClusterRole -> its grants."""
    return {
        (m["metadata"].get("namespace"), m["metadata"]["name"]): expand(m.get("rules") or [])
        for m in find(manifests, kind)
    }


@pytest.fixture(scope="module", params=VALUES_CASES, ids=CASE_IDS)
def rendered(request: pytest.FixtureRequest, helm: Helm) -> tuple[str, list[Manifest]]:
    name, files = request.param
    return name, helm.template(files)


# --- lint and render ---------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "files"), VALUES_CASES, ids=CASE_IDS)
def test_lint_strict(helm: Helm, name: str, files: list[Path]) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for path in files:
        args += ["--values", str(path)]
    result = helm.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ERROR]" not in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout


def test_ci_values_cover_the_optional_parts(helm: Helm) -> None:
    """Each optional resource kind is rendered by at least one ci/*.yaml, and not by default."""
    default = {m["kind"] for m in helm.template()}
    assert {"Deployment", "ServiceAccount", "Role", "RoleBinding", "ClusterRole"} <= default
    assert {"CustomResourceDefinition", "PersistentVolumeClaim", "Service"} <= default
    assert not {"NetworkPolicy", "ServiceMonitor"} & default
    kinds: set[str] = set()
    for path in CI_VALUES:
        kinds |= {m["kind"] for m in helm.template([path])}
    assert {"NetworkPolicy", "ServiceMonitor", "ClusterRoleBinding"} <= kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_are_valid_kubernetes(rendered: tuple[str, list[Manifest]], version: str) -> None:
    _, manifests = rendered
    unknown = []
    for manifest in manifests:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.append(manifest)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where} invalid for Kubernetes {version}: {err.message} at {err.path}")
    for manifest in unknown:
        assert manifest["kind"] == "ServiceMonitor", f"no schema for {manifest['kind']}"
        check_service_monitor(manifest, manifests)


def check_service_monitor(monitor: Manifest, manifests: list[Manifest]) -> None:
    """prometheus-operator's CRD is not ours: check the fields we set and that it finds the
    metrics Service's port."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) == {"namespaceSelector", "selector", "endpoints"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    service = one(manifests, "Service", f"{FULLNAME}-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    duration = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert duration.match(endpoint["interval"])
        assert duration.match(endpoint["scrapeTimeout"])


def test_names_are_unique(rendered: tuple[str, list[Manifest]]) -> None:
    _, manifests = rendered
    keys = [
        (m["apiVersion"], m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"])
        for m in manifests
    ]
    assert len(keys) == len(set(keys))


# --- the operator Deployment -------------------------------------------------------------------
def test_operator_deployment(rendered: tuple[str, list[Manifest]]) -> None:
    name, manifests = rendered
    values = load_values(dict(VALUES_CASES)[name])
    deployment = one(manifests, "Deployment", FULLNAME)
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
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
    assert settings.tensorrt_version == values["build"]["tensorrtVersion"]
    assert settings.triton_startup_seconds == values["triton"]["startupSeconds"]
    assert settings.onnx_serving_backend == values["triton"]["onnxServingBackend"]
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


def test_watch_namespaces_get_roles_and_env(helm: Helm) -> None:
    manifests = helm.template(values={"watchNamespaces": ["ml-a", "ml-b"]})
    assert env_of(operator_container(manifests))["MODELOPS_NAMESPACES"] == "ml-a,ml-b"
    roles = {m["metadata"]["namespace"] for m in find(manifests, "Role")}
    bindings = {m["metadata"]["namespace"] for m in find(manifests, "RoleBinding")}
    assert roles == bindings == {"ml-a", "ml-b"}
    assert len(find(manifests, "ClusterRole")) == 1  # discovery only


def test_metrics_service_targets_the_operator(helm: Helm) -> None:
    manifests = helm.template()
    service = one(manifests, "Service", f"{FULLNAME}-metrics")
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert find(helm.template(values={"metrics": {"service": {"enabled": False}}}), "Service") == []


def test_network_policy_selects_the_operator(helm: Helm) -> None:
    files = [CHART / "ci" / "networkpolicy-servicemonitor-values.yaml"]
    manifests = helm.template(files)
    policy = one(manifests, "NetworkPolicy")
    pod_labels = one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 443, 6443, 8002} <= egress_ports
    values = load_values(files)["networkPolicy"]
    assert policy["spec"]["ingress"][0]["from"] == values["metricsFrom"]
    assert policy["spec"]["egress"][-1] == values["extraEgress"][0]


# --- pod security ------------------------------------------------------------------------------
def test_chart_pods_are_restricted(rendered: tuple[str, list[Manifest]]) -> None:
    _, manifests = rendered
    pods = [pod for m in manifests for pod in pod_specs(m)]
    assert pods, "the chart renders no pod"
    for metadata, pod in pods:
        assert restricted_violations(pod, metadata) == []


def _restricted_pod() -> Manifest:
    return {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "image": "x",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                },
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "c", "configMap": {"name": "x"}}],
    }


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
        (lambda p: p.update(hostPID=True), "hostPID"),
        (lambda p: p.update(hostIPC=True), "hostIPC"),
        (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "s"}}), "nfs"),
        (lambda p: p["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser"),
        (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda p: p["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccomp"),
        (lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"), "Escal"),
        (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged"),
        (lambda p: p["containers"][0]["securityContext"]["capabilities"].update(drop=[]), "ALL"),
        (
            lambda p: p["containers"][0]["securityContext"]["capabilities"].update(
                add=["SYS_ADMIN"]
            ),
            "SYS_ADMIN",
        ),
        (
            lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
            "hostPort",
        ),
        (
            lambda p: p["containers"][0]["securityContext"].update(runAsNonRoot=False),
            "runAsNonRoot",
        ),
        (
            lambda p: p["securityContext"].update(
                sysctls=[{"name": "kernel.msgmax", "value": "1"}]
            ),
            "sysctl",
        ),
        (lambda p: p.update(initContainers=[{"name": "i", "image": "x"}]), "initContainers[i]"),
    ],
)
def test_pss_checker_rejects(mutate: Any, expected: str) -> None:
    """The checker itself: the reference pod passes, each single breach is reported."""
    assert restricted_violations(_restricted_pod()) == []
    pod = _restricted_pod()
    mutate(pod)
    violations = restricted_violations(pod)
    assert any(expected in v for v in violations), violations


def _operator_rendered_workloads() -> list[Manifest]:
    """The build Job and the Triton revision objects the operator creates, rendered with the
    Settings the default chart values configure."""
    job_mod = pytest.importorskip(
        "modelops_operator.render.job", reason="render/job.py has not landed yet"
    )
    rev_mod = pytest.importorskip(
        "modelops_operator.render.revision", reason="render/revision.py has not landed yet"
    )
    from modelops_contract.manifest import EngineManifest
    from modelops_operator.api import ModelDeployment

    settings = Settings(store_pvc="modelops-engines")
    out: list[Manifest] = []
    # file:// examples are for `modelops dev`: the operator refuses them (spec.model.source.uri).
    for example in ("minimal-onnx.yaml", "torchscript-gpu.yaml", "canary-autoscaling.yaml"):
        body = yaml.safe_load((REPO / "examples" / example).read_text())
        body["metadata"].update(namespace="ml", uid="0f6c5a5e-1111-2222-3333-444455556666")
        body["metadata"].setdefault("generation", 1)
        body["metadata"].setdefault("resourceVersion", "1")
        md = ModelDeployment.from_body(body)
        key = "sha256:" + "ab" * 32
        out.append(job_mod.render_build_job(md, key, settings))
        tensorrt = str(md.spec.build.engine) == "tensorrt"
        engine = EngineManifest(
            key=key,
            engine=str(md.spec.build.engine),
            precision=str(md.spec.build.precision),
            serving_backend="tensorrt_plan" if tensorrt else "onnxruntime",
            model_name="model",
            model_file="model.plan" if tensorrt else "model.onnx",
            gpu_product=md.spec.build.gpu.product if tensorrt and md.spec.build.gpu else None,
            inputs=[{"name": "input", "data_type": "FP32", "dims": [16]}],
            outputs=[{"name": "logits", "data_type": "FP32", "dims": [4]}],
            max_batch_size=8,
            opt_batch_size=4,
            source_sha256="cd" * 32,
            format="onnx",
            created_at="2025-01-01T00:00:00Z",
        )
        out.extend(rev_mod.render_revision(md, 2, engine, settings))
    return out


def test_operator_rendered_pods_are_restricted() -> None:
    workloads = _operator_rendered_workloads()
    kinds = {m["kind"] for m in workloads}
    assert {"Job", "Deployment"} <= kinds
    for manifest in workloads:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{where} invalid for {version}: {err.message} at {err.path}")
        for metadata, pod in pod_specs(manifest):
            assert restricted_violations(pod, metadata) == [], where
            # Build Jobs and Triton pods never talk to the API server.
            assert pod.get("automountServiceAccountToken") is False, where


# --- RBAC --------------------------------------------------------------------------------------
def test_rbac_is_exactly_the_required_rules(rendered: tuple[str, list[Manifest]]) -> None:
    name, manifests = rendered
    values = load_values(dict(VALUES_CASES)[name])
    roles = grants_of(manifests, "Role")
    cluster_roles = grants_of(manifests, "ClusterRole")
    discovery = [g for g in cluster_roles.values() if g == REQUIRED_CLUSTER]
    assert len(discovery) == 1, "one ClusterRole with exactly the cluster-scoped rules"
    if values["clusterWide"]:
        assert roles == {}
        assert sorted(cluster_roles.values(), key=len) == [REQUIRED_CLUSTER, REQUIRED_NAMESPACED]
    else:
        assert len(cluster_roles) == 1
        namespaces = values["watchNamespaces"] or [NAMESPACE]
        assert sorted(ns or "" for ns, _ in roles) == sorted(namespaces)
        for grants in roles.values():
            assert grants == REQUIRED_NAMESPACED
    # Every role is bound to the operator's ServiceAccount, in its namespace.
    account = one(manifests, "ServiceAccount")["metadata"]["name"]
    for kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        bound = set()
        for binding in find(manifests, kind):
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
            ]
            assert binding["roleRef"]["kind"] == role_kind
            bound.add((binding["metadata"].get("namespace"), binding["roleRef"]["name"]))
        assert bound == set(grants_of(manifests, role_kind))


def test_rbac_has_no_wildcard_and_no_secret(rendered: tuple[str, list[Manifest]]) -> None:
    _, manifests = rendered
    for manifest in find(manifests, "Role") + find(manifests, "ClusterRole"):
        assert "aggregationRule" not in manifest
        for rule in manifest["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames/URLs
            for field in rule.values():
                assert all("*" not in item for item in field), rule
            assert "secrets" not in rule["resources"], rule
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_required_rules_are_least_privilege() -> None:
    """The agreed list itself: no wildcard, no Secret, no update (the operator patches)."""
    for group, resource, verb in REQUIRED:
        assert "*" not in (group + resource + verb)
        assert resource != "secrets"
        assert verb in {"get", "list", "watch", "create", "patch", "delete"}
    assert ("modelops.dev", "modeldeployments", "update") not in REQUIRED
    assert {("", "secrets", v) for v in ("get", "list")}.isdisjoint(REQUIRED)
    cluster_scoped = {
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    assert cluster_scoped == REQUIRED_CLUSTER


# --- the CRD -----------------------------------------------------------------------------------
def generated_crd() -> Manifest:
    crd: Manifest = yaml.safe_load(CRD_FILE.read_text())
    return crd


def test_chart_crd_file_is_the_generated_one() -> None:
    chart_copy = CHART / "files" / "crds" / CRD_FILE.name
    assert chart_copy.read_bytes() == CRD_FILE.read_bytes()


@pytest.mark.parametrize("keep", [True, False])
def test_crd_template_is_the_generated_crd(helm: Helm, keep: bool) -> None:
    manifests = helm.template(values={"crds": {"enabled": True, "keep": keep}})
    crd = one(manifests, "CustomResourceDefinition", CRD_NAME)
    expected = generated_crd()
    if keep:
        expected["metadata"]["annotations"] = {
            **expected["metadata"].get("annotations", {}),
            KEEP: "keep",
        }
    assert crd == expected


def test_crd_can_be_left_out(helm: Helm) -> None:
    manifests = helm.template(values={"crds": {"enabled": False}})
    assert find(manifests, "CustomResourceDefinition") == []


def test_packaged_chart_carries_the_crd(helm: Helm, tmp_path: Path) -> None:
    """files/crds is a symbolic link: `helm package` must store the file's content."""
    result = helm.run("package", str(CHART), "--destination", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("modelops-*.tgz")
    result = helm.run("template", RELEASE, str(archive), "--namespace", NAMESPACE)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    crd = one(docs, "CustomResourceDefinition", CRD_NAME)
    assert crd["spec"] == generated_crd()["spec"]


def strict_schema(node: Any, path: str = "") -> Any:
    """A CRD structural schema as JSON Schema, unknown fields rejected the way the API server
    does with strict field validation (`metadata` is the API server's, left open)."""
    if isinstance(node, list):
        return [strict_schema(item, path) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "properties":
            out[key] = {name: strict_schema(sub, f"{path}.{name}") for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_schema(value, path + "[]")
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = strict_schema(value, path)
        else:
            out[key] = value
    # OpenAPI v3.0 booleans exclusiveMinimum/Maximum -> JSON Schema numbers.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if out.get(exclusive) is True:
            out[exclusive] = out.pop(bound)
        elif out.get(exclusive) is False:
            del out[exclusive]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("nullable"):
        out["type"] = [out["type"], "null"] if isinstance(out.get("type"), str) else out["type"]
    if (
        out.get("type") == "object"
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
        and path != ".metadata"
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validator(helm: Helm) -> jsonschema.Draft202012Validator:
    crd = one(helm.template(), "CustomResourceDefinition", CRD_NAME)
    (version,) = crd["spec"]["versions"]
    schema = strict_schema(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_valid_against_the_chart_crd(
    crd_validator: jsonschema.Draft202012Validator, example: Path
) -> None:
    body = yaml.safe_load(example.read_text())
    assert body["apiVersion"] == "modelops.dev/v1alpha1"
    assert body["kind"] == "ModelDeployment"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in crd_validator.iter_errors(body)]
    assert errors == []


@pytest.mark.parametrize(
    ("field", "patch"),
    [
        ("serving.image", {"serving": {"image": "evil.example.com/triton:latest"}}),
        ("serving.serviceAccountName", {"serving": {"serviceAccountName": "cluster-admin"}}),
        ("build.image", {"build": {"image": "evil.example.com/builder:1"}}),
        ("serving.securityContext", {"serving": {"securityContext": {"privileged": True}}}),
        ("spec.podTemplate", {"podTemplate": {"spec": {"hostNetwork": True}}}),
    ],
)
def test_crd_rejects_images_and_service_accounts(
    crd_validator: jsonschema.Draft202012Validator, field: str, patch: dict[str, Any]
) -> None:
    """Nothing in a ModelDeployment chooses an image, an identity or pod privileges: the CRD's
    schema has no such fields, so strict field validation rejects them."""
    body = yaml.safe_load((REPO / "examples" / "cpu-onnxruntime.yaml").read_text())
    assert list(crd_validator.iter_errors(body)) == []
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(body["spec"].get(key), dict):
            body["spec"][key].update(value)
        else:
            body["spec"][key] = value
    messages = [e.message for e in crd_validator.iter_errors(body)]
    assert any("Additional properties are not allowed" in m for m in messages), (field, messages)


# --- values.schema.json ------------------------------------------------------------------------
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())


def _schema_objects(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, value in node.items():
            yield from _schema_objects(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schema_objects(value, f"{path}[{index}]")


def test_values_schema_is_strict() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    objects = list(_schema_objects(SCHEMA))
    assert len(objects) > 30
    for path, node in objects:
        if path in ("$.properties.global", "$.definitions", "$.properties"):
            continue
        if ".properties.properties" in path or path.endswith((".definitions", ".properties")):
            continue
        if node.get("type") != "object":  # a "properties" map seen as a node, or an if/then
            continue
        assert "additionalProperties" in node, f"{path} accepts unknown keys"
        if "properties" in node:
            assert node["additionalProperties"] is False, path


def test_default_values_pass_the_schema() -> None:
    values = load_values([])
    jsonschema.Draft7Validator(SCHEMA).validate(values)
    for path in CI_VALUES:
        jsonschema.Draft7Validator(SCHEMA).validate(load_values([path]))


# Definitions that are Kubernetes types (resources, affinity, ...), documented upstream; `image`
# is the chart's own.
OWN_DEFINITIONS = {"image"}


def _schema_property_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the chart's own keys (properties, into the chart's own definitions)."""
    target = node.get("$ref") or next(
        (sub["$ref"] for sub in node.get("allOf", []) if "$ref" in sub), None
    )
    if target and target.rsplit("/", 1)[-1] not in OWN_DEFINITIONS:
        return
    node = _deref(node)
    for name, sub in (node.get("properties") or {}).items():
        path = f"{prefix}{name}"
        yield path
        yield from _schema_property_paths(sub, path + ".")


def _deref(node: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _deref(SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]])
    if "allOf" in node and len(node["allOf"]) == 1:
        return _deref(node["allOf"][0])
    return node


def _values_key_lines() -> Iterator[tuple[str, int]]:
    """(dotted key path, line index) of every mapping key line of values.yaml."""
    stack: list[tuple[int, str]] = []
    for index, line in enumerate((CHART / "values.yaml").read_text().splitlines()):
        match = re.match(r"^( *)([A-Za-z][\w.-]*|\"[^\"]+\"):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        yield ".".join(key for _, key in stack), index


def test_values_yaml_documents_every_key() -> None:
    """values.yaml holds every key of the schema (but `global`), each under a comment."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    schema_paths = set(_schema_property_paths(SCHEMA)) - {"global"}
    seen = set()
    for path, index in _values_key_lines():
        if path not in schema_paths:
            continue  # data inside a typed map, e.g. resources.requests.cpu
        seen.add(path)
        previous = next(lines[i] for i in range(index - 1, -1, -1) if lines[i].strip())
        assert previous.strip().startswith("#"), f"values.yaml: {path} has no comment above it"
    assert seen == schema_paths, f"in the schema, not in values.yaml: {schema_paths - seen}"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"replicaCount": 2}, "replicaCount"),
        ({"replicas": 2}, "replicas"),
        ({"operator": {"logLevel": "debug"}}, "logLevel"),
        ({"clusterWide": "yes"}, "clusterWide"),
        ({"images": {"operator": {"tag": 1.2}}}, "tag"),
        ({"images": {"triton": {"tag": "25.10 py3"}}}, "tag"),
        ({"images": {"builder": {"digest": "sha256:abc"}}}, "digest"),
        ({"images": {"operator": {"registry": "ghcr.io"}}}, "registry"),
        ({"images": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"watchNamespaces": ["Bad_NS"]}, "watchNamespaces"),
        ({"clusterWide": True, "watchNamespaces": ["ml"]}, "watchNamespaces"),
        ({"operator": {"metricsPort": "8080"}}, "metricsPort"),
        ({"operator": {"resources": {"limit": {"cpu": "1"}}}}, "limit"),
        ({"operator": {"resources": {"limits": {"memory": "lots"}}}}, "memory"),
        ({"store": {"pvc": {"size": 100}}}, "size"),
        ({"store": {"pvc": {"accessModes": ["RWX"]}}}, "accessModes"),
        ({"store": {"s3": {"uri": "https://bucket/prefix"}}}, "uri"),
        ({"build": {"backoffLimit": 11}}, "backoffLimit"),
        ({"triton": {"onnxServingBackend": "tensorrt"}}, "onnxServingBackend"),
        ({"crds": {"keep": "true"}}, "keep"),
        ({"rbac": {"create": True, "extraRules": []}}, "extraRules"),
        (
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "enabled",
        ),
        ({"networkPolicy": {"extraEgress": [{"to": [], "port": 443}]}}, "port"),
        ({"operator": {"tolerations": [{"key": "a", "operator": "Maybe"}]}}, "operator"),
    ],
    ids=lambda v: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else None,
)
def test_schema_rejects_bad_values(helm: Helm, values: dict[str, Any], expected: str) -> None:
    error = helm.template_error(values=values)
    assert "values don't meet the specifications of the schema" in error, error
    assert expected in error, error


def test_existing_service_account_needs_a_name(helm: Helm) -> None:
    error = helm.template_error(values={"serviceAccount": {"create": False}})
    assert "serviceAccount.name is required" in error
    manifests = helm.template(values={"serviceAccount": {"create": False, "name": "mine"}})
    assert find(manifests, "ServiceAccount") == []
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


def test_replicas_zero_pauses_the_operator(helm: Helm) -> None:
    manifests = helm.template(values={"replicas": 0})
    assert one(manifests, "Deployment")["spec"]["replicas"] == 0


# --- the Argo CD health check ------------------------------------------------------------------
HEALTH_LUA = CHART / "docs" / "argocd-health.lua"


def _health(obj: dict[str, Any]) -> dict[str, Any]:
    lupa = pytest.importorskip("lupa", reason="lupa (Lua in Python) is not installed")
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    to_lua = runtime.eval(
        "function(py, conv) local function c(v) return conv(v, c) end return c(py) end"
    )

    def convert(value: Any, recurse: Any) -> Any:
        if isinstance(value, dict):
            return runtime.table_from({k: recurse(v) for k, v in value.items()})
        if isinstance(value, list):
            return runtime.table_from([recurse(v) for v in value])
        return value

    check = runtime.eval(f"function(obj) {HEALTH_LUA.read_text()} end")
    result = check(to_lua(obj, convert))
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        ({}, 1, "Progressing"),
        ({"phase": "Building", "observedGeneration": 1}, 1, "Progressing"),
        (
            {
                "phase": "Ready",
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "message": "serving r1"}],
            },
            1,
            "Healthy",
        ),
        (
            {
                "phase": "Ready",
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True"}],
            },
            2,
            "Progressing",
        ),
        (
            {
                "phase": "RolledBack",
                "observedGeneration": 2,
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "Degraded", "status": "True", "message": "canary error rate 0.3"},
                ],
            },
            2,
            "Degraded",
        ),
        (
            {
                "phase": "Failed",
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "False", "message": "bad sha256"}],
            },
            1,
            "Degraded",
        ),
    ],
)
def test_argocd_health(status: dict[str, Any], generation: int, expected: str) -> None:
    obj = {"metadata": {"name": "m", "generation": generation}, "spec": {}, "status": status}
    assert _health(obj)["status"] == expected
