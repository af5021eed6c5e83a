"""The real kubectl running `kubectl modelops` against kmock's API server.

kubectl is the binary hack/install-helm.sh unpacks into .tools/bin (or $KUBECTL; a fresh
machine has no other, a development machine may have one on PATH). It finds the plugin as
`kubectl-modelops` on PATH, here the console script of the venv running the tests, and passes
it the environment, so the plugin reads the kubeconfig written here: context `emulator`
(current, namespace default) and context `elsewhere` (namespace other) on the same server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_KUBECTL = REPO / ".tools" / "bin" / "kubectl"


def kubectl_binary() -> Path:
    """$KUBECTL, else .tools/bin/kubectl (hack/install-helm.sh), else a kubectl on PATH; none
    fails the test, saying how to get one."""
    found = os.environ.get("KUBECTL") or (
        str(DEFAULT_KUBECTL) if DEFAULT_KUBECTL.is_file() else shutil.which("kubectl")
    )
    binary = Path(found or DEFAULT_KUBECTL)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise AssertionError(
            f"kubectl not found at {binary}: run `bash hack/install-helm.sh` (it unpacks helm "
            "and kubectl; hack/test.sh, the README's test command, runs it first)"
        )
    return binary


@dataclass(frozen=True)
class Ran:
    """What one kubectl run left."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """stdout and stderr together."""
        return self.out + self.err


class Kubectl:
    """Runs the real kubectl with the plugin on PATH and a kubeconfig for the emulator."""

    def __init__(self, binary: Path, server: str, home: Path) -> None:
        self.binary = binary
        home.mkdir(parents=True, exist_ok=True)
        config = home / "kubeconfig"
        cluster = {"server": server}
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "emulator",
                    "clusters": [{"name": "kmock", "cluster": cluster}],
                    "users": [{"name": "tester", "user": {"token": "test-token"}}],
                    "contexts": [
                        {
                            "name": "emulator",
                            "context": {"cluster": "kmock", "user": "tester"},
                        },
                        {
                            "name": "elsewhere",
                            "context": {"cluster": "kmock", "user": "tester", "namespace": "other"},
                        },
                    ],
                }
            )
        )
        scripts = Path(sys.executable).parent  # the venv's bin: kubectl-modelops lives there
        self.env = {
            **os.environ,
            "KUBECONFIG": str(config),
            "HOME": str(home),
            "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}",
            "COLUMNS": "80",
            "NO_COLOR": "1",
        }

    async def run(self, *args: str, limit: float = 60.0) -> Ran:
        """kubectl ARGS, to the end (the event loop keeps serving the emulator meanwhile)."""
        proc = await self.start(*args)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return Ran(proc.returncode or 0, out.decode(), err.decode())

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        """kubectl ARGS, running in the background."""
        return await asyncio.create_subprocess_exec(
            str(self.binary),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def modelops(self, *args: str, limit: float = 60.0) -> Ran:
        """`kubectl modelops ARGS`."""
        return await self.run("modelops", *args, limit=limit)
