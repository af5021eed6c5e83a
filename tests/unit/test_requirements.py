"""requirements/*.txt are the one source of each image's Python environment: pyproject.toml reads
them (setuptools dynamic dependencies), both Dockerfiles install them and nothing else, and the
builder's CPU and GPU variants differ only in the builds of torch and onnxruntime."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import dockerfile
import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DOCKERFILES = [REPO / "operator" / "Dockerfile", REPO / "builder" / "Dockerfile"]


def _lines(path: Path) -> list[str]:
    """The requirement and option lines of a requirements file (no comments, no blanks)."""
    text = path.read_text().splitlines()
    return [line.strip() for line in text if line.strip() and not line.lstrip().startswith("#")]


def _requirements(path: Path) -> dict[str, Requirement]:
    """name -> requirement of a requirements file, its pip options left out."""
    found = [Requirement(line) for line in _lines(path) if not line.startswith("-")]
    return {requirement.name: requirement for requirement in found}


def _dynamic_files() -> list[Path]:
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    files = list(dynamic["dependencies"]["file"])
    for extra in dynamic["optional-dependencies"].values():
        files += extra["file"]
    return [REPO / name for name in files]


def test_pyproject_takes_its_dependencies_from_the_files() -> None:
    assert set(PYPROJECT["project"]["dynamic"]) == {"dependencies", "optional-dependencies"}
    assert "dependencies" not in PYPROJECT["project"]
    assert "optional-dependencies" not in PYPROJECT["project"]


@pytest.mark.parametrize("path", _dynamic_files(), ids=lambda path: path.name)
def test_files_read_by_setuptools_hold_requirements_only(path: Path) -> None:
    """setuptools reads no pip options: a `-r` or `--index-url` line would break the build."""
    for line in _lines(path):
        assert not line.startswith("-"), f"{path.name}: pip option {line!r}, setuptools reads it"
        Requirement(line)  # raises on anything that is not PEP 508


def test_cpu_and_gpu_variants_pin_the_same_versions() -> None:
    cpu = _requirements(REQUIREMENTS / "builder-cpu.txt")
    gpu = _requirements(REQUIREMENTS / "builder-gpu.txt")
    assert set(cpu) == {"torch", "onnxruntime"}
    assert set(gpu) == {"torch", "onnxruntime-gpu"}
    assert str(gpu["torch"].specifier) == str(cpu["torch"].specifier) == "==2.13.0"
    assert str(gpu["onnxruntime-gpu"].specifier) == str(cpu["onnxruntime"].specifier)
    options = [line for line in _lines(REQUIREMENTS / "builder-gpu.txt") if line.startswith("-")]
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cu130"]


def test_no_requirement_is_in_two_files_of_one_image() -> None:
    builder = ["base.txt", "builder.txt", "builder-gpu.txt"]
    seen: dict[str, str] = {}
    for name in builder:
        for requirement in _requirements(REQUIREMENTS / name):
            assert requirement not in seen, f"{requirement} in {seen.get(requirement)} and {name}"
            seen[requirement] = name


def _pip_installs(path: Path) -> list[list[str]]:
    """The arguments of every `pip install` in a Dockerfile's RUN instructions."""
    installs = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd != "RUN":
            continue
        for step in " ".join(command.value).split("&&"):
            words = shlex.split(step)
            if len(words) > 2 and words[0].endswith("/pip") and words[1] == "install":
                installs.append(words[2:])
    return installs


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda path: path.parent.name)
def test_dockerfiles_install_the_files_and_the_package_only(path: Path) -> None:
    """No package is named in a Dockerfile: a pin there would drift from pyproject.toml."""
    installs = _pip_installs(path)
    assert installs, f"{path} installs nothing with pip"
    for words in installs:
        rest = [word for word in words if word != "--no-cache-dir"]
        if rest == ["--no-deps", "."]:
            continue
        assert len(rest) % 2 == 0, words
        assert rest[0::2] == ["-r"] * (len(rest) // 2), words
        for name in rest[1::2]:
            assert name.startswith("requirements/"), name
    assert ["--no-cache-dir", "--no-deps", "."] in installs  # the package, after its files
