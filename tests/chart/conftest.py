"""Fixtures of the chart tests: the real helm binary, installed by hack/install-helm.sh."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.chart import CASE_IDS, VALUES_CASES, Helm, Manifest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_HELM = REPO / ".tools" / "bin" / "helm"


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    """.tools/bin/helm (or $HELM); the chart tests skip, saying how to get it, when it is absent."""
    binary = Path(os.environ.get("HELM") or DEFAULT_HELM)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.skip(
            f"helm not found at {binary}: run `bash hack/install-helm.sh` "
            "(hack/test.sh, the README's test command, runs it first)"
        )
    version = subprocess.run(
        [str(binary), "version", "--short"], capture_output=True, text=True, check=False
    )
    assert version.returncode == 0, f"{binary} does not run: {version.stderr}"
    assert version.stdout.startswith(("v3.", "v4.")), version.stdout
    return binary


@pytest.fixture(scope="session")
def helm(helm_binary: Path) -> Helm:
    """The helm binary, with template and failure helpers."""
    return Helm(helm_binary)


@pytest.fixture(scope="module", params=VALUES_CASES, ids=CASE_IDS)
def rendered(request: pytest.FixtureRequest, helm: Helm) -> tuple[str, list[Manifest]]:
    """The chart rendered with the default values and with each ci/*.yaml."""
    name, files = request.param
    return name, helm.template(files)
