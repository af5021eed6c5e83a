"""Two releases of the chart in one cluster, each watching its own namespaces: the chart
(real helm) installed into the emulated cluster as `helm install` does it (helm's ownership
check included), two operators with their chart-rendered Settings.

- The second release with the defaults fails as helm fails on a real cluster: the CRD belongs
  to the first release.
- With `crds.enabled=false` (docs/install.md) it installs, `modelops doctor`'s CRD check says
  which release owns the CRD, and each operator builds only its own namespaces'
  ModelDeployments (its build Jobs run in its own release namespace).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelops_cli.doctor_checks import crd_finding
from modelops_operator.api.crd import build_crd
from modelops_operator.k8s import resources as r
from modelops_operator.render.names import build_job_name
from modelops_operator.settings import Settings
from tests.support.chart import Helm
from tests.support.chart_cluster import HelmOwnershipError, declare_chart_resources, helm_install
from tests.support.engine_store import TEST_MAC_KEY, TEST_TRANSFER_KEY
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.namespace_watch import parse_namespace_paths, store_namespaces
from tests.support.operator_flow import RunOperator, finish_source, key_of, spec

REPO = Path(__file__).resolve().parents[2]
CRD = "modeldeployments.modelops.dev"
TEAMS = {"a": ("team-a", "team-a-system"), "b": ("team-b", "team-b-system")}


@pytest.fixture
def helm() -> Helm:
    binary = REPO / ".tools" / "bin" / "helm"
    assert binary.exists(), "helm not found: run `bash hack/install-helm.sh`"
    return Helm(binary)


async def test_a_second_release_shares_the_first_ones_crd_and_watches_its_own_namespaces(
    api: Any,
    cluster: Cluster,
    helm: Helm,
    run_operator: RunOperator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declare_chart_resources(api)
    (tenant_a, system_a), (tenant_b, system_b) = TEAMS["a"], TEAMS["b"]
    first = await helm_install(helm, cluster, "a", system_a, f"watchNamespaces={{{tenant_a}}}")
    assert ("CustomResourceDefinition", None, CRD) in first.objects
    with pytest.raises(HelmOwnershipError, match='must equal "b": current value is "a"'):
        await helm_install(helm, cluster, "b", system_b, f"watchNamespaces={{{tenant_b}}}")
    assert system_b not in cluster.namespaces or not cluster.names(r.DEPLOYMENTS, system_b)
    second = await helm_install(
        helm, cluster, "b", system_b, f"watchNamespaces={{{tenant_b}}}", "crds.enabled=false"
    )
    assert not [key for key in second.objects if key[0] == "CustomResourceDefinition"]

    stored = cluster.get(r.CRDS, CRD, None)
    for release, namespace in (("a", system_a), ("b", system_b)):
        finding = crd_finding(stored, build_crd(), release, namespace)
        assert finding.level == "ok", finding
        if release == "a":
            assert "owned by this release (a)" in finding.detail
        else:
            assert f"owned by release a in {system_a}" in finding.detail
            assert "crds.enabled=false" in finding.detail

    keys = {"store_mac_key": TEST_MAC_KEY, "transfer_key": TEST_TRANSFER_KEY}
    settings = {
        team: installed.operator_settings(
            store_mount_path=str(tmp_path / f"store-{team}"),
            reconcile_interval_seconds=60.0,
            log_format="plain",
            **keys,
        )
        for team, installed in (("a", first), ("b", second))
    }
    for team in TEAMS:
        (tmp_path / f"store-{team}").mkdir()
    # Each operator watches its release's namespaces, as `modelops operator` does.
    assert settings["a"].namespaces == [tenant_a]
    assert settings["b"].namespaces == [tenant_b]
    parse_namespace_paths(monkeypatch)
    await store_namespaces(cluster, [tenant_a, tenant_b, system_a, system_b])
    await both_operators_build_their_own(cluster, run_operator, settings)


async def both_operators_build_their_own(
    cluster: Cluster, run_operator: RunOperator, settings: dict[str, Settings]
) -> None:
    """A ModelDeployment in each release's watched namespace: each is built by its release's
    operator only (its build Job runs in that release's namespace)."""
    async with (
        run_operator(settings=settings["a"], namespaced=True),
        run_operator(settings=settings["b"], namespaced=True),
    ):
        for tenant, _ in TEAMS.values():
            await cluster.create_md("m", spec(), tenant)
        for team, (tenant, system) in TEAMS.items():
            await finish_source(cluster, settings[team], "m", namespace=tenant)
            job = build_job_name(tenant, "m", key_of(cluster, "m", settings[team], tenant))
            await eventually(
                lambda job=job, system=system: cluster.get(r.JOBS, job, system),
                what=f"build Job in {system}",
            )
        # Each operator built only what its release watches.
        for team, (tenant, _) in TEAMS.items():
            other = next(s for t, (_, s) in TEAMS.items() if t != team)
            assert not [n for n in cluster.names(r.JOBS, other) if tenant in n], (team, other)
            assert cluster.md("m", tenant)["status"]["phase"] == "Building"
