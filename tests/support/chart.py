"""What the chart tests share: the real helm binary (.tools/bin/helm from hack/install-helm.sh),
rendered manifests, and RBAC as grants. The tests themselves are tests/chart/test_chart_*.py:

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
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelops_operator.k8s.permissions import CLUSTER_SCOPED, REQUIRED_RULES, grants

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


def secret_value(secret: str, key: str) -> str:
    """What the kubelet would read from a Secret, in tests: a stand-in naming the two."""
    return f"from-secret-{secret}-{key}".ljust(40, "x")


def env_of(container: Manifest, namespace: str = NAMESPACE) -> dict[str, str]:
    """The container's env as the kubelet resolves it: literal values, the pod's namespace
    (fieldRef), and Secret keys (secret_value stand-ins); nothing else is allowed."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        assert item["name"] not in env, f"env {item['name']} set twice"
        source = item.get("valueFrom") or {}
        if "value" in item:
            env[item["name"]] = item["value"]
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = namespace
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = secret_value(ref["name"], ref["key"])
        else:
            raise AssertionError(f"env {item['name']}: unexpected {item}")
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
