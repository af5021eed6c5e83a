"""The README's "Install on a cluster" commands, executed as written against the emulated
cluster (kmock) and the real operator.

Executed: `helm install` (the real helm's `template` with the same release, chart, namespace
and --set, every object created as install creates it, --create-namespace included); `modelops
doctor` (every check passes; kmock answers its SubjectAccessReviews from the stored RBAC); `kubectl
apply -n ml -f examples/minimal-onnx.yaml` (the file as written, into a namespace that must
exist, as the API server requires); `kubectl wait --for=condition=Ready` (the test waits on the
very condition); `kubectl get md` (every printer column of the CRD resolves). The operator runs
with the Settings its chart-rendered pod would have, Secrets resolved from the Secret the chart
created.

Not executed: the containers (the example's model URL is a placeholder the README asks you to
replace). The test plays their part as the kubelet and the engine server would report it, with
the chart's own keys, and checks that every pod the operator creates names only claims and
Secrets that exist in its namespace, the failure this issue was about. The containers
themselves run in test_second_namespace.py and test_store_server.py.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from modelops_cli.doctor import diagnose, render
from modelops_contract.integrity import receipt_scope, token
from modelops_contract.staging import StageSummary
from modelops_operator.k8s import resources as r
from modelops_operator.k8s.client import Credentials
from modelops_operator.render.names import build_job_name, revision_name, source_job_name
from tests.support.chart import Helm
from tests.support.chart_cluster import (
    PVCS,
    NamespaceNotFoundError,
    create,
    declare_chart_resources,
    helm_install,
    install_network_plugin,
    missing_references,
    readme_block,
)
from tests.support.engine_store import entry_dir, seal
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.operator_flow import (
    RunOperator,
    engine_manifest,
    key_of,
    phase,
    serve_revision,
    summary,
)
from tests.support.rbac_review import serve_access_reviews, serve_namespaces
from tests.support.router_pod import router_pod

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


@pytest.fixture
def helm() -> Helm:
    binary = REPO / ".tools" / "bin" / "helm"
    if not binary.exists():
        pytest.skip("helm not found: run `bash hack/install-helm.sh`")
    return Helm(binary)


def commands() -> list[list[str]]:
    return [shlex.split(line) for line in readme_block(README, "## Install on a cluster")]


def option(argv: list[str], *names: str) -> str:
    """An option's value, given as `--name value` or `--name=value`."""
    for i, arg in enumerate(argv):
        if arg in names:
            return argv[i + 1]
        name, _, value = arg.partition("=")
        if name in names and value:
            return value
    raise AssertionError(f"{argv} gives none of {names}")


def test_the_readme_says_what_the_test_runs() -> None:
    verbs = [argv[:2] for argv in commands()]
    assert verbs == [
        ["hack/build-images.sh", "registry.example.com/ml"],
        ["helm", "install"],
        ["modelops", "doctor"],
        ["kubectl", "apply"],
        ["kubectl", "wait"],
        ["kubectl", "get"],
    ]


def built_images(build: list[str]) -> set[str]:
    """The image references `hack/build-images.sh REGISTRY` pushes (its --plan)."""
    proc = subprocess.run(
        [str(REPO / build[0]), "--plan", *build[1:]],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return {line.split("\t")[2] for line in proc.stdout.splitlines()}


def images_of(helm: Helm, release: str, namespace: str, sets: list[str]) -> set[str]:
    """The operator's and builder's references the chart renders with `sets`."""
    args = ["template", release, str(REPO / "charts" / "modelops"), "--namespace", namespace]
    result = helm.run(*args, *(item for value in sets for item in ("--set", value)))
    assert result.returncode == 0, result.stderr
    for doc in yaml.safe_load_all(result.stdout):
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == release:
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in container["env"]}
            return {container["image"], env["MODELOPS_BUILDER_IMAGE"]}
    raise AssertionError("no operator Deployment rendered")


def column(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.strip(".").split("."):
        value = (value or {}).get(part)
    return value


def pods_of_jobs(cluster: Cluster, namespace: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, job["spec"]["template"]["spec"])
        for name in cluster.names(r.JOBS, namespace)
        if (job := cluster.get(r.JOBS, name, namespace)) is not None
    ]


async def test_the_readme_install_works_as_written_on_a_fresh_cluster(
    api: Any, cluster: Cluster, helm: Helm, run_operator: RunOperator, store: Path, tmp_path: Path
) -> None:
    declare_chart_resources(api)
    build, install, check, apply, wait, get = commands()
    # helm install modelops charts/modelops -n modelops-system --create-namespace --set ...
    assert "--create-namespace" in install
    release, namespace = install[2], option(install, "-n", "--namespace")
    sets = [install[i + 1] for i, arg in enumerate(install) if arg == "--set"]
    # hack/build-images.sh REGISTRY pushed the images the --set flags name (no Docker here:
    # its --plan says which; tests/chart/test_build_images.py runs the rest).
    pushed = built_images(build)
    installed_images = images_of(helm, release, namespace, sets)
    assert installed_images == pushed
    installed = await helm_install(helm, cluster, release, namespace, *sets)
    watched = option(apply, "-n", "--namespace")
    assert watched in cluster.namespaces, "the chart creates the namespace the README uses"
    # The chart's own pods name only what the chart created in their namespace.
    for (kind, ns, name), obj in installed.objects.items():
        if kind == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            assert missing_references(pod, ns or namespace, cluster) == [], name
    # modelops doctor -n modelops-system --release modelops, once the controllers ran the
    # chart's pods (the engine server available, its claim bound).
    serve_access_reviews(api, cluster)
    serve_namespaces(api, cluster)
    # The cluster's network plugin enforces NetworkPolicies (doctor checks it).
    await install_network_plugin(api, cluster, "calico-node", "calico-node", "kube-system")
    await cluster.ready_deployment(f"{release}-store", namespace)
    claim = PVCS.path(namespace, "modelops-engines")
    await cluster._send("PATCH", claim, {"status": {"phase": "Bound"}})
    assert (option(check, "-n", "--namespace"), option(check, "--release")) == (namespace, release)
    findings = await diagnose(Credentials(server=str(api.url).rstrip("/")), release, namespace)
    assert [f for f in findings if f.level != "ok"] == []
    assert render(findings, release, namespace, Console(record=True)) == 0
    settings = installed.operator_settings(
        store_mount_path=str(store), reconcile_interval_seconds=60.0, log_format="plain"
    )
    assert settings.namespaces == [watched]
    manifest = yaml.safe_load((REPO / option(apply, "-f")).read_text())
    name = manifest["metadata"]["name"]
    # Its router pod starts when the operator creates the router (Ready waits for it).
    async with (
        router_pod(cluster, name, watched, tmp_path, settings) as router,
        run_operator(**router.operator_options()),
    ):
        # kubectl apply -n ml -f examples/minimal-onnx.yaml
        await create(cluster, manifest, watched)
        key = await eventually(lambda: key_of(cluster, name, settings, watched), what="the key")
        source = source_job_name(name, key)
        await eventually(lambda: cluster.get(r.JOBS, source, watched), what="the source Job")
        for job, pod in pods_of_jobs(cluster, watched):
            assert missing_references(pod, watched, cluster) == [], job
        # The source Job fetched the model; the engine server's receipt, with the chart's key.
        md = cluster.md(name, watched)
        sha, uid = md["spec"]["model"]["source"]["sha256"], md["metadata"]["uid"]
        keys = installed.secret(settings.store_key_secret)
        receipt = token(keys["transfer"].encode(), receipt_scope(sha, uid, kept=True))
        stage = StageSummary(ok=True, sha256=sha, bytes=1, kept=True, receipt=receipt)
        await cluster.finish_job(source, stage.to_wire(), namespace=watched)
        build = build_job_name(watched, name, key)
        await eventually(lambda: cluster.get(r.JOBS, build, namespace), what="the build Job")
        for job, pod in pods_of_jobs(cluster, namespace):
            assert missing_references(pod, namespace, cluster) == [], job
        # The publishing step sealed the entry with the chart's key.
        entry = entry_dir(store, key)
        (entry / "repository" / "model" / "1").mkdir(parents=True, exist_ok=True)
        (entry / "repository" / "model" / "1" / "model.onnx").write_bytes(b"resnet50")
        seal(entry, engine_manifest(key), mac_key=keys["mac"])
        await cluster.finish_job(build, summary(key), namespace=namespace)
        # kubectl wait -n ml --for=condition=Ready md/resnet50
        assert option(wait, "--for") == "condition=Ready"
        revision = revision_name(name, 1)
        await eventually(lambda: cluster.get(r.DEPLOYMENTS, revision, watched), what="r1")
        deployment = cluster.get(r.DEPLOYMENTS, revision, watched)
        assert deployment is not None
        pod = deployment["spec"]["template"]["spec"]
        assert missing_references(pod, watched, cluster) == []
        await serve_revision(cluster, name, 1, namespace=watched)
        await eventually(lambda: phase(cluster, name, watched) == "Ready", what="Ready")
        ready = next(
            c for c in cluster.md(name, watched)["status"]["conditions"] if c["type"] == "Ready"
        )
        assert ready["status"] == "True"
        for job, pod in pods_of_jobs(cluster, watched):
            assert missing_references(pod, watched, cluster) == [], job
    # kubectl get md -n ml: every printer column resolves on the stored object.
    assert get[2] == "md"
    crd = installed.find("CustomResourceDefinition", "modeldeployments.modelops.dev", None)
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    stored = cluster.md(name, watched)
    resolved = {c["name"]: column(stored, c["jsonPath"]) for c in columns}
    assert resolved["Phase"] == "Ready"
    assert resolved["Revision"] == 1
    assert resolved["Ready"] == "1/1"
    assert resolved["Model"] == manifest["spec"]["model"]["source"]["uri"]


async def test_without_the_namespace_the_readme_apply_fails_as_on_a_real_cluster(
    api: Any, cluster: Cluster, helm: Helm
) -> None:
    """The emulator holds the commands to what a real API server answers: with the chart told
    not to create namespaces, `kubectl apply -n ml` fails (and a real `helm install` fails
    before, naming the namespace: templates/namespaces.yaml, which needs a live cluster)."""
    declare_chart_resources(api)
    _, install, _, apply, _, _ = commands()
    release, namespace = install[2], option(install, "-n", "--namespace")
    sets = [install[i + 1] for i, arg in enumerate(install) if arg == "--set"]
    with pytest.raises(NamespaceNotFoundError, match='namespaces "ml" not found'):
        await helm_install(helm, cluster, release, namespace, *sets, "createWatchNamespaces=false")
    assert "ml" not in cluster.namespaces
    manifest = yaml.safe_load((REPO / option(apply, "-f")).read_text())
    with pytest.raises(NamespaceNotFoundError):
        await create(cluster, manifest, option(apply, "-n"))
