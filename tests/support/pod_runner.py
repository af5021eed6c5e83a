"""Run one container of a pod the operator rendered, as the kubelet would, on this machine.

Only the modelops-build containers run here (the builder image's `modelops-build` and `python`
are this venv's): the container's own command, args and environment, its volumes mapped to
local folders (each mountPath rewritten to its folder wherever the args or env name it),
`secretKeyRef`/`secretRef` resolved from the Secrets given, `optional` keys skipped like the
kubelet skips them, and the termination message read back from the file the container wrote.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Secrets = Mapping[str, Mapping[str, str]]  # Secret name -> key -> value


@dataclass(frozen=True)
class Ran:
    """What a container did: exit code, stdout, stderr, termination message."""

    returncode: int
    stdout: str
    stderr: str
    message: str


def pod_containers(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every container of a Job's or Deployment's pod template, init containers first, by name."""
    spec = manifest["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def _environment(container: Mapping[str, Any], secrets: Secrets) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        env.update(secrets[source["secretRef"]["name"]])
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"Secret {ref['name']} has no key {ref['key']}"
            continue
        env[item["name"]] = value
    return env


def run_container(
    container: Mapping[str, Any],
    volumes: Mapping[str, Path],
    workdir: Path,
    *,
    secrets: Secrets | None = None,
    timeout: float = 300.0,
) -> Ran:
    """Run `container` with each volume (by name) at a local folder; returns what it did."""
    mounts = {}
    for mount in container.get("volumeMounts") or []:
        local = volumes[mount["name"]]
        if mount.get("subPath"):
            local = local / mount["subPath"]
        local.mkdir(parents=True, exist_ok=True)
        mounts[mount["mountPath"]] = local

    # One pass, longest mount first, whole path components only: a local folder put in by one
    # replacement is never replaced again.
    pattern = re.compile(
        "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True)) + r"(?=/|$|\W)"
    )

    def local(text: str) -> str:
        return pattern.sub(lambda found: str(mounts[found.group(0)]), text) if mounts else text

    env = {k: local(v) for k, v in _environment(container, secrets or {}).items()}
    root = env.get("MODELOPS_PVC_ROOT")
    claims = [m for m in mounts if root and m.startswith(root + "/")]
    if root and claims:
        # pvc://CLAIM/PATH reads <root>/CLAIM: the claim's local folder must be named CLAIM.
        env["MODELOPS_PVC_ROOT"] = str(mounts[claims[0]].parent)
    log = workdir / f"{container['name']}.termination-log"
    log.unlink(missing_ok=True)
    env |= {
        "PATH": "/usr/bin:/bin",
        "MODELOPS_TERMINATION_LOG": str(log),
        "TMPDIR": str(mounts.get("/tmp", workdir)),
    }
    # The builder image's PATH finds its venv's `modelops-build` and `python`: this venv's here.
    command = list(container["command"])
    if command[0] == "modelops-build":
        command[0] = str(Path(sys.executable).parent / command[0])
    elif command[0] == "python":
        command[0] = sys.executable
    args = [local(a) for a in container.get("args") or []]
    result = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        timeout=timeout,
        check=False,
    )
    message = log.read_text() if log.exists() else ""
    return Ran(result.returncode, result.stdout, result.stderr, message)
