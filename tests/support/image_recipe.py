"""What an image's Dockerfile installs, read with the official Dockerfile parser, and the same
steps run without Docker: its COPY lines into a fresh build folder, its RUN lines into a fresh
venv, with the CPU variant's build args.

The only translations (each needed because there is no container here):
- `/opt/venv` is the test's venv and the WORKDIR (`/src`) the test's build folder;
- `python -m venv` runs this interpreter, without `--system-site-packages` (on the NGC base it
  shows the venv the base's tensorrt, which a CPU machine does not have);
- `--no-cache-dir` is dropped and pip installs from a wheelhouse (REPO/.cache/image-wheels,
  filled once with `pip download` of the same files) instead of the index: a rerun installs
  offline, and a requirement that is missing from a file is missing from the venv all the same;
- like Docker's layer cache, the RUN that makes the venv (the dependency layer) is kept under
  REPO/.cache/image-layers, keyed by its text and every file COPY'd before it, and rebuilt
  from nothing when one changes; the steps after it run every time, in a fresh venv that sees
  the kept layer's site-packages through a .pth file (the package itself is never kept);
- a RUN that does not touch the venv checks the base image itself (the NGC base's TensorRT
  version): it cannot run on a CPU machine, is not run, and must say `tensorrt`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile

REPO = Path(__file__).resolve().parents[2]
VENV = "/opt/venv"
WHEELHOUSE = REPO / ".cache" / "image-wheels"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


@dataclass(frozen=True)
class Image:
    """One image of the project: its Dockerfile, the build args of its CPU variant, and the
    chart value that names it (`images.<value>`)."""

    name: str
    dockerfile: Path
    cpu_args: Mapping[str, str] = field(default_factory=dict)


IMAGES = (
    Image("operator", REPO / "operator" / "Dockerfile"),
    Image("builder", REPO / "builder" / "Dockerfile", {"VARIANT": "cpu"}),
)


Copy = tuple[list[str], str]  # COPY sources (context-relative), destination


@dataclass(frozen=True)
class Recipe:
    """The venv stage's COPY and RUN lines in order (args resolved; a COPY is a `Copy`, a RUN
    its shell text) and the final stage's entry point."""

    workdir: str
    steps: list[Copy | str]
    base_checks: list[str]
    entrypoint: list[str]
    cmd: list[str]

    @property
    def runs(self) -> list[str]:
        return [step for step in self.steps if isinstance(step, str)]


def _stages(path: Path) -> tuple[dict[str, str], list[list[dockerfile.Command]]]:
    """(global ARG defaults, the instructions of each stage)."""
    global_args: dict[str, str] = {}
    stages: list[list[dockerfile.Command]] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            stages.append([])
        elif not stages and command.cmd == "ARG":
            name, _, default = command.value[0].partition("=")
            global_args[name] = default
        else:
            stages[-1].append(command)
    return global_args, stages


def read_recipe(image: Image) -> Recipe:
    """The recipe of `image` with its CPU variant's build args."""
    global_args, stages = _stages(image.dockerfile)
    venv_stages = [s for s in stages if any(VENV in " ".join(c.value) for c in s if c.cmd == "RUN")]
    assert len(venv_stages) == 1, f"{image.dockerfile}: expected one stage that builds {VENV}"
    args: dict[str, str] = {}
    workdir, steps, base_checks = "/", [], []
    for command in venv_stages[0]:
        if command.cmd == "ARG":
            name, has_default, default = command.value[0].partition("=")
            args[name] = default if has_default else global_args.get(name, "")
            args[name] = image.cpu_args.get(name, args[name])
        elif command.cmd == "WORKDIR" and not steps:
            workdir = command.value[0]
        elif command.cmd == "COPY":
            assert not any(flag.startswith("--from") for flag in command.flags), command.original
            *sources, destination = command.value
            steps.append((list(sources), destination))
        elif command.cmd == "RUN":
            text = string.Template(" ".join(command.value)).safe_substitute(args)
            (steps if VENV in text else base_checks).append(text)
    for check in base_checks:
        assert "tensorrt" in check, (
            f"a RUN that needs the base image but checks no TensorRT: {check}"
        )
    final = stages[-1]
    entrypoint = [c for c in final if c.cmd == "ENTRYPOINT"]
    cmd = [c for c in final if c.cmd == "CMD"]
    assert all(c.json for c in entrypoint + cmd), "ENTRYPOINT and CMD in exec (JSON) form"
    return Recipe(
        workdir=workdir,
        steps=steps,
        base_checks=base_checks,
        entrypoint=list(entrypoint[-1].value) if entrypoint else [],
        cmd=list(cmd[-1].value) if cmd else [],
    )


def copy_context(copy: Copy, build_dir: Path) -> None:
    """A COPY line, from the repository (the build context) into `build_dir` (the WORKDIR)."""
    sources, destination = copy
    target = build_dir / destination
    for source in sources:
        origin = REPO / source
        assert origin.exists(), f"COPY {source}: not in the repository"
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=IGNORED, dirs_exist_ok=True)
        elif destination.endswith("/") or len(sources) > 1:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / origin.name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def translate(run: str, recipe: Recipe, build_dir: Path, venv: Path) -> str:
    """A RUN line as it runs here (the translations in this module's docstring)."""
    text = run.replace(VENV, str(venv))
    if recipe.workdir != "/":
        text = re.sub(rf"(?<![\w/.-]){re.escape(recipe.workdir)}(?![\w.-])", str(build_dir), text)
    text = re.sub(r"\bpython3? -m venv\b", f"{shlex.quote(sys.executable)} -m venv", text)
    return text.replace(" --system-site-packages", "").replace(" --no-cache-dir", "")


def _pip_installs(run: str) -> list[list[str]]:
    """Each `pip install` of a RUN line, its words without `--no-cache-dir`."""
    found = []
    for step in run.split("&&"):
        words = [w for w in shlex.split(step) if w != "--no-cache-dir"]
        if len(words) > 2 and words[0].endswith("/pip") and words[1] == "install":
            found.append(words)
    return found


def _requirement_args(run: str) -> list[list[str]]:
    """The `-r FILE` arguments of each `pip install -r` in a RUN line."""
    found = []
    for words in _pip_installs(run):
        if "-r" in words:
            files = [w for w in words[2:] if w != "-r"]
            found.append([item for name in files for item in ("-r", name)])
    return found


def _fill_wheelhouse(requirements: list[str], build_dir: Path) -> None:
    """`pip download` what `requirements` resolve to, once per content of the files named."""
    digest = hashlib.sha256()
    for word in requirements:
        digest.update(word.encode())
        path = build_dir / word
        if path.is_file():
            digest.update(path.read_bytes())
    stamp = WHEELHOUSE / f".done-{digest.hexdigest()[:24]}"
    if stamp.exists():
        return
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    download = [sys.executable, "-m", "pip", "download", "-q", "-d", str(WHEELHOUSE)]
    proc = subprocess.run(
        [*download, *requirements], cwd=build_dir, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, f"pip download {requirements} failed:\n{proc.stderr[-3000:]}"
    stamp.touch()


def build_requirements() -> list[str]:
    """pyproject.toml's build-system requirements (pip's isolated build of `.` needs them)."""
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"])


def _run(recipe: Recipe, run: str, build_dir: Path, venv: Path, log: list[str]) -> None:
    """One RUN line, translated, in `build_dir` with pip on the wheelhouse."""
    for requirements in _requirement_args(run):
        _fill_wheelhouse(requirements, build_dir)
    line = translate(run, recipe, build_dir, venv)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", line],
        cwd=build_dir if build_dir.exists() else build_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    log.append(f"$ {line}\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    assert proc.returncode == 0, f"step failed:\n{log[-1]}"


def _layer_key(recipe: Recipe, upto: int) -> str:
    """What Docker keys the layer of step `upto` by: the steps up to it and the files they COPY."""
    digest = hashlib.sha256(sys.version.encode())
    for step in recipe.steps[: upto + 1]:
        digest.update(repr(step).encode())
        if isinstance(step, str):
            continue
        for source in step[0]:
            origin = REPO / source
            files = sorted(origin.rglob("*")) if origin.is_dir() else [origin]
            for path in files:
                if path.is_file() and "__pycache__" not in path.parts:
                    digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    return digest.hexdigest()[:24]


def _dependency_layer(image: Image, recipe: Recipe, log: list[str]) -> tuple[int, Path]:
    """(index of the RUN that makes the venv, the kept venv of that layer), built when missing."""
    index = next(i for i, s in enumerate(recipe.steps) if isinstance(s, str) and "-m venv" in s)
    installs = [words[2:] for words in _pip_installs(str(recipe.steps[index]))]
    assert all(words and words[0] == "-r" for words in installs), (
        f"{image.dockerfile}: the RUN that makes the venv installs {installs}: give it the "
        "requirements files only (its own layer) and install the package in a later RUN"
    )
    key = _layer_key(recipe, index)
    layers = REPO / ".cache" / "image-layers"
    kept = layers / f"{image.name}-{key}"
    if not (kept / "complete").exists():
        for old in layers.glob(f"{image.name}-*"):
            shutil.rmtree(old)  # one kept layer per image
        work = layers / f".{image.name}-{key}-building"
        shutil.rmtree(work, ignore_errors=True)
        (work / "src").mkdir(parents=True)
        for step in recipe.steps[:index]:
            if not isinstance(step, str):
                copy_context(step, work / "src")
        _fill_wheelhouse(build_requirements(), work / "src")
        _run(recipe, str(recipe.steps[index]), work / "src", kept / "venv", log)
        shutil.rmtree(work)
        (kept / "complete").touch()
    return index, kept / "venv"


def build_venv(image: Image, root: Path) -> tuple[Recipe, Path, str]:
    """Run `image`'s recipe under `root` (build folder and fresh venv); (recipe, venv, log)."""
    recipe = read_recipe(image)
    log: list[str] = []
    index, layer = _dependency_layer(image, recipe, log)
    build_dir, venv = root / "src", root / "venv"
    build_dir.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (layer_site,) = layer.glob("lib/python*/site-packages")
    (site / "_image_dependency_layer.pth").write_text(f"{layer_site}\n")
    _fill_wheelhouse(build_requirements(), build_dir)
    for i, step in enumerate(recipe.steps):
        if isinstance(step, str):
            if i != index:
                _run(recipe, step, build_dir, venv, log)
        else:
            copy_context(step, build_dir)
    return recipe, venv, "\n".join(log)
