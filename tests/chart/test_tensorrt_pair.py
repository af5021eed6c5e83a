"""One TensorRT for building and serving, checked with the real helm binary and on the files
that pin it: the chart's values, the builder Dockerfile, the operator's defaults, requirements/.

A plan loads only in the TensorRT that built it. The chart shows one pair (images.triton.tag,
images.builder.tag, tensorrt.version); changing any one alone must fail `helm template` (and so
`helm install`), and every other pin must agree with the chart's.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from modelops_builder.tensorrt_versions import EXPECTED_VERSION_ENV, FULL_VERSION
from modelops_operator.render.job import EXPECTED_TENSORRT_ENV
from modelops_operator.settings import Settings
from tests.support.chart import CHART, REPO, Helm, env_of, load_values, operator_container

DOCKERFILE = REPO / "builder" / "Dockerfile"
VALUES = load_values([])
TRT_VERSION: str = VALUES["tensorrt"]["version"]
RELEASE = VALUES["images"]["triton"]["tag"][:5]


@pytest.fixture(scope="module")
def helm(helm_binary: Path) -> Helm:
    return Helm(helm_binary)


def _arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"builder/Dockerfile has no ARG {name}=..."
    return match.group(1)


def test_default_values_render_the_full_version(helm: Helm) -> None:
    env = env_of(operator_container(helm.template()))
    assert env["MODELOPS_TENSORRT_VERSION"] == TRT_VERSION
    assert FULL_VERSION.match(TRT_VERSION)
    assert env["MODELOPS_TRITON_IMAGE"].endswith(f":{RELEASE}-py3")
    assert env["MODELOPS_BUILDER_IMAGE"].endswith(f"-ngc{RELEASE}")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"images": {"triton": {"tag": "26.11-py3"}}}, 'images.triton.tag "26.11-py3" is'),
        ({"images": {"builder": {"tag": "0.1.0-ngc26.11"}}}, "is built for NGC release 26.11"),
        ({"tensorrt": {"version": "11.5.0.12"}}, 'tensorrt.version "11.5.0.12" is not'),
        ({"images": {"builder": {"tag": "0.1.0"}}}, "must end in -ngc26.10"),
        ({"images": {"triton": {"tag": "latest"}}}, "must start with its NGC release"),
        (
            {"images": {"triton": {"tag": "26.11-py3"}, "builder": {"tag": "0.1.0-ngc26.11"}}},
            "does not know which TensorRT NGC release 26.11 ships",
        ),
    ],
    ids=["triton-alone", "builder-alone", "version-alone", "untagged-builder", "latest", "unknown"],
)
def test_changing_one_side_of_the_pair_fails_helm(
    helm: Helm, values: dict[str, Any], expected: str
) -> None:
    error = helm.template_error(values=values)
    assert expected in error, error


@pytest.mark.parametrize("version", ["11.4", "11.4.0", "11.4.0.106-cu13"])
def test_schema_wants_the_full_version(helm: Helm, version: str) -> None:
    """The engine key holds the version: "11.4" would key 11.4.0.106 and 11.4.1.x the same."""
    error = helm.template_error(values={"tensorrt": {"version": version}})
    assert "values don't meet the specifications of the schema" in error
    assert "tensorrt/version" in error


def test_helm_install_refuses_a_split_pair(helm: Helm, tmp_path: Path) -> None:
    """`helm install --dry-run` renders like install does: the pair check runs there too."""
    args = ["install", "mo", str(CHART), "--dry-run=client", "--namespace", "modelops-system"]
    ok = subprocess.run(
        [str(helm.binary), *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    split = subprocess.run(
        [str(helm.binary), *args, "--set", "images.triton.tag=26.11-py3"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert split.returncode != 0
    assert "TensorRT plans built by one do not load in the other" in split.stderr


def test_builder_dockerfile_is_the_chart_s_release() -> None:
    """FROM the NGC TensorRT image of Triton's release, checking the chart's exact version."""
    text = DOCKERFILE.read_text()
    assert "FROM nvcr.io/nvidia/tensorrt:${NGC_RELEASE}-py3" in text
    assert _arg("NGC_RELEASE") == RELEASE
    assert _arg("TENSORRT_VERSION") == TRT_VERSION
    assert "tensorrt.__version__" in text  # the build stops on another base


def test_no_tensorrt_pin_is_a_version_pypi_cannot_match() -> None:
    """PEP 440: ==11.4.0 does not match 11.4.0.106, so the original pin installed nothing."""
    assert not SpecifierSet("==11.4.0").contains("11.4.0.106")
    pins = re.findall(r"tensorrt[a-z0-9-]*==([0-9.$A-Z{}_]+)", DOCKERFILE.read_text())
    assert pins == [], f"builder/Dockerfile pins tensorrt with pip: {pins}"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    (path,) = extras["optional-dependencies"]["tensorrt"]["file"]
    lines = (REPO / path).read_text().splitlines()
    (pin,) = [line for line in lines if line and not line.startswith("#")]
    assert pin == f"tensorrt-cu13=={TRT_VERSION}"  # CUDA 13, like NGC 26.x


def test_operator_defaults_are_the_chart_s_pair() -> None:
    defaults = Settings()
    assert defaults.tensorrt_version == TRT_VERSION
    assert defaults.triton_image.endswith(f"tritonserver:{RELEASE}-py3")
    assert defaults.builder_image.endswith(f"-ngc{RELEASE}")
    with pytest.raises(ValueError, match="pattern"):
        Settings(tensorrt_version="11.4")


def test_operator_and_builder_name_the_same_env() -> None:
    assert EXPECTED_TENSORRT_ENV == EXPECTED_VERSION_ENV


def test_trt_e2e_script_parses_and_reads_the_chart() -> None:
    script = REPO / "hack" / "trt-e2e.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    text = script.read_text()
    reader = re.search(r"^chart_value\(\) \{.*?^\}$", text, re.MULTILINE | re.DOTALL)
    assert reader
    for key, want in [
        ("tensorrt.version", TRT_VERSION),
        ("images.triton.tag", VALUES["images"]["triton"]["tag"]),
        ("images.builder.repository", VALUES["images"]["builder"]["repository"]),
        ("images.builder.tag", VALUES["images"]["builder"]["tag"]),
    ]:
        got = subprocess.run(
            ["bash", "-c", f"{reader.group(0)}\nchart_value {key}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert got == want, key
