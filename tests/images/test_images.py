"""Each image, without Docker: a fresh venv made by its Dockerfile's own COPY and RUN lines (CPU
variant: tests/support/image_recipe.py), then every command the chart and the operator give its
containers (read from what they render: tests/support/image_commands.py) run in that venv as
the kubelet would start it, far enough to prove that it imports and parses:

- every rendered argv through the real entry point, stopped at its parser (parse_probe.py), and
  `--help` of each command;
- a real start where cheap: the engine server answers /healthz and the router agent /metrics on
  loopback; the builder builds a tiny ExportedProgram (torch.export -> ONNX through onnxscript,
  ONNX Runtime, the accuracy gate);
- every module of the packages each image runs imported.

The first run fills REPO/.cache/image-wheels with `pip download` (network); later runs install
offline from it (about a minute for both venvs on the reference machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.chart import Helm
from tests.support.image_commands import (
    POD_RENDERERS,
    Container,
    image_containers,
    pod_renderers_in_source,
)
from tests.support.image_recipe import IMAGES, Image, Recipe, build_venv

# A new dependency layer (first run, or a requirements file changed) takes minutes to install.
pytestmark = pytest.mark.timeout(1200)
PROBE = Path(__file__).with_name("parse_probe.py")
# Executables a container of the image runs that come from its base image, not the package
# (none today: every container runs a console script or `python -m` of the package).
BASE_TOOLS: dict[str, set[str]] = {"builder": set(), "operator": set()}
# The packages whose every module each image must import, less the modules that run elsewhere:
# `modelops dev` (a laptop command: the operator image has no torch) and the python-backend
# model that `modelops dev` gives Triton (Triton provides triton_python_backend_utils).
TRITON_MODEL = "modelops_builder.triton_cpu.model"
IMPORTED = {
    "operator": (
        ["modelops_operator", "modelops_contract", "modelops_cli"],
        {"modelops_cli.dev"},
    ),
    "builder": (
        ["modelops_builder", "modelops_contract", "modelops_operator", "modelops_cli"],
        {TRITON_MODEL},
    ),
}


@dataclass(frozen=True)
class BuiltImage:
    image: Image
    recipe: Recipe
    venv: Path
    containers: list[Container]

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command with the venv's bin first on PATH, as the image's ENV sets it."""
        env = {**os.environ, "PATH": f"{self.venv / 'bin'}:{os.environ['PATH']}", "HOME": "/tmp"}
        env.pop("VIRTUAL_ENV", None)
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=env, timeout=timeout, check=False
        )


@pytest.fixture(scope="module")
def containers(helm_binary: Path) -> dict[str, list[Container]]:
    return image_containers(Helm(helm_binary))


@pytest.fixture(scope="module", params=IMAGES, ids=[image.name for image in IMAGES])
def built(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    containers: dict[str, list[Container]],
) -> Iterator[BuiltImage]:
    image: Image = request.param
    root = tmp_path_factory.mktemp(f"image-{image.name}")
    recipe, venv, _ = build_venv(image, root)
    yield BuiltImage(image, recipe, venv, containers[image.name])
    shutil.rmtree(root, ignore_errors=True)


def test_every_pod_renderer_is_a_case() -> None:
    """A new pod renderer in modelops_operator.render must be rendered here, or its commands
    would go unchecked."""
    assert pod_renderers_in_source() == set(POD_RENDERERS)


def test_both_images_have_containers(containers: dict[str, list[Container]]) -> None:
    commands = {
        name: {c.where.rsplit(" ", 1)[-1] for c in found} for name, found in containers.items()
    }
    assert {"operator", "agent"} <= commands["operator"]
    assert {"server", "build", "publish", "pull-engine", "source", "validate"} <= commands[
        "builder"
    ], commands


def _argvs(built: BuiltImage) -> list[tuple[Container, list[str]]]:
    unique: dict[str, tuple[Container, list[str]]] = {}
    for container in built.containers:
        argv = container.argv(built.recipe.entrypoint, built.recipe.cmd)
        unique.setdefault(json.dumps(argv), (container, argv))
    return list(unique.values())


def test_every_rendered_command_parses(built: BuiltImage) -> None:
    """Each distinct argv the kubelet would run (ENTRYPOINT/CMD and command/args combined as
    Kubernetes does) is a console script of the venv whose real parser accepts it."""
    scripts, tools = [], set()
    for container, argv in _argvs(built):
        if argv[0] in BASE_TOOLS[built.image.name]:
            tools.add(argv[0])
            continue
        assert (built.venv / "bin" / argv[0]).is_file(), f"{container.where}: no {argv[0]} on PATH"
        scripts.append(argv)
    assert tools == BASE_TOOLS[built.image.name]  # each allowed base-image tool is still used
    helps = sorted({json.dumps(_help(argv)) for argv in scripts})
    probes = _probe(built, [*scripts, *(json.loads(h) for h in helps)])
    for argv in scripts:
        assert probes[json.dumps(argv)]["result"] == "parsed", probes[json.dumps(argv)]
    for text in helps:
        outcome = probes[text]
        assert outcome["result"] == "exit 0", outcome
        assert "usage:" in str(outcome["output"]), outcome


def _help(argv: list[str]) -> list[str]:
    """`--help` of argv's command (its subcommand when the first argument is one)."""
    program = argv[: argv.index("-m") + 2] if "-m" in argv else argv[:1]
    rest = argv[len(program) :]
    subcommand = rest[:1] if rest and not rest[0].startswith("-") else []
    return [*program, *subcommand, "--help"]


def _probe(built: BuiltImage, argvs: list[list[str]]) -> dict[str, dict[str, object]]:
    proc = subprocess.run(
        [str(built.venv / "bin" / "python"), str(PROBE)],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {json.dumps(result["argv"]): result for result in results}


def test_every_module_imports(built: BuiltImage) -> None:
    packages, excluded = IMPORTED[built.image.name]
    script = (
        "import importlib, pkgutil, sys\n"
        f"packages, excluded = {packages!r}, {sorted(excluded)!r}\n"
        "names = []\n"
        "for name in packages:\n"
        "    package = importlib.import_module(name)\n"
        "    names += [m.name for m in pkgutil.walk_packages(package.__path__, name + '.')]\n"
        "for name in sorted(set(names) - set(excluded)):\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    proc = built.run(str(built.venv / "bin" / "python"), "-c", script)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert int(proc.stdout.split()[-1]) > 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _on_loopback(container: Container, argv: list[str], root: Path) -> tuple[list[str], int]:
    """The container's argv with its mounts under `root` and its server on a free loopback port."""
    mapped = []
    for word in argv:
        for mount in container.mounts:
            if word == mount or word.startswith(f"{mount}/"):
                word = str(root) + word
                (root / mount.lstrip("/")).mkdir(parents=True, exist_ok=True)
        mapped.append(word)
    port = _free_port()
    return [*mapped, "--host", "127.0.0.1", "--port", str(port)], port


@contextlib.contextmanager
def _serving(built: BuiltImage, container: Container, root: Path) -> Iterator[int]:
    argv, port = _on_loopback(
        container, container.argv(built.recipe.entrypoint, built.recipe.cmd), root
    )
    env = {**os.environ, **container.env, "PATH": f"{built.venv / 'bin'}:{os.environ['PATH']}"}
    env.update(HOME=str(root), TMPDIR=str(root))
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(port: int, path: str, deadline: float) -> int:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
                status: int = reply.status
                return status
        except OSError:
            assert time.monotonic() < deadline, f"nothing answers 127.0.0.1:{port}{path}"
            time.sleep(0.2)


def _first(built: BuiltImage, name: str) -> Container:
    return next(c for c in built.containers if c.where.endswith(f"container {name}"))


def test_servers_start(built: BuiltImage, tmp_path: Path) -> None:
    """The engine server (builder) answers /healthz, the router agent (operator) /metrics."""
    name, path = {"builder": ("server", "/healthz"), "operator": ("agent", "/metrics")}[
        built.image.name
    ]
    with _serving(built, _first(built, name), tmp_path) as port:
        assert _get(port, path, time.monotonic() + 60) == 200


def test_builder_builds_an_exported_program(built: BuiltImage, tmp_path: Path) -> None:
    """The transformer path in the builder image: torch.export -> ONNX (dynamo exporter, which
    needs onnxscript) -> ONNX Runtime, gated against PyTorch. The operator image builds nothing:
    its venv must not even have torch."""
    if built.image.name == "operator":
        proc = built.run(str(built.venv / "bin" / "python"), "-c", "import torch")
        assert "No module named 'torch'" in proc.stderr
        return
    from tests.support.builder_cases import save_model
    from tests.support.torch_models import tiny_models

    path, _ = save_model(tiny_models()["mlp"], "exported-program", tmp_path)
    proc = built.run(
        "modelops-build",
        str(path),
        "--format",
        "exported-program",
        "--out",
        str(tmp_path / "store"),
        "--profile-seconds",
        "0.1",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "max abs" in proc.stdout, proc.stdout
