"""`kubectl modelops logs NAME [--build | --revision N]`: logs by what they are, not pod hashes.

--build: the source Job's pod (in the ModelDeployment's namespace), then the newest build Job's
pod (in the release namespace: its stages fetch, export, build, gate, publish). Otherwise a
revision's Triton pods (default: the candidate when one rolls out, else the current revision).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from modelops_operator.k8s.client import KubeClient
from modelops_operator.k8s.errors import ApiError
from modelops_operator.k8s.resources import JOBS, MODELDEPLOYMENTS, PODS
from modelops_operator.render.common import (
    LABEL_COMPONENT,
    LABEL_DEPLOYMENT,
    LABEL_NAME,
    LABEL_REVISION,
    TRITON_APP,
    owner_labels,
)
from modelops_operator.render.names import label_value

from .snapshot import build_job_labels

Obj = dict[str, Any]


def _newest(items: list[Obj]) -> Obj | None:
    return max(items, key=lambda o: str(o["metadata"].get("creationTimestamp") or ""), default=None)


async def _job_logs(
    client: KubeClient, namespace: str, job: Obj, tail: int | None, console: Console
) -> None:
    name = job["metadata"]["name"]
    pods = await client.list(PODS, namespace, {"job-name": name})
    if not pods:
        console.print(f"[yellow]# Job {namespace}/{escape(name)}: no pod left[/]")
    for pod in sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or "")):
        await _pod_logs(client, namespace, pod, tail, console, f"Job {name}")


async def _pod_logs(
    client: KubeClient, namespace: str, pod: Obj, tail: int | None, console: Console, what: str
) -> None:
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    for container in containers or [""]:
        console.print(f"[bold]# {escape(what)}: pod {namespace}/{escape(name)} {container}[/]")
        try:
            text = await client.read_log(namespace, name, container, tail)
        except ApiError as exc:
            console.print(f"[yellow]  log not readable: {escape(str(exc))}[/]")
            continue
        console.out(text.rstrip("\n"), highlight=False)


async def build_logs(
    client: KubeClient,
    namespace: str,
    name: str,
    release_namespace: str,
    tail: int | None,
    console: Console,
) -> int:
    """The source Job's and the newest build Job's logs."""
    await client.get(MODELDEPLOYMENTS, namespace, name)  # NotFoundError names it
    jobs = await client.list(JOBS, namespace, owner_labels(name))
    source = _newest(
        [j for j in jobs if (j["metadata"].get("labels") or {}).get(LABEL_COMPONENT) == "source"]
    )
    if source is not None:
        await _job_logs(client, namespace, source, tail, console)
    try:
        builds = await client.list(JOBS, release_namespace, build_job_labels(namespace, name))
    except ApiError as exc:
        console.print(f"[red]build Jobs not readable in {release_namespace}: {exc.reason}[/]")
        return 1
    build = _newest(builds)
    if build is None:
        console.print(
            f"[yellow]no build Job of {name} in {release_namespace} (none ran, or it expired)[/]"
        )
        return 0 if source is not None else 1
    await _job_logs(client, release_namespace, build, tail, console)
    return 0


async def revision_logs(
    client: KubeClient,
    namespace: str,
    name: str,
    revision: int | None,
    tail: int | None,
    console: Console,
) -> int:
    """The Triton logs of every pod of one revision."""
    md = await client.get(MODELDEPLOYMENTS, namespace, name)
    numbers = (md.get("status") or {}).get("revision") or {}
    number = (
        revision if revision is not None else numbers.get("candidate") or numbers.get("current")
    )
    if number is None:
        console.print(f"[red]{escape(name)} has no revision yet: try --build[/]")
        return 1
    labels = {LABEL_DEPLOYMENT: label_value(name), LABEL_NAME: TRITON_APP}
    pods = await client.list(PODS, namespace, {**labels, LABEL_REVISION: str(number)})
    if not pods:
        console.print(f"[red]revision {number} of {escape(name)} has no pods[/]")
        return 1
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        await _pod_logs(client, namespace, pod, tail, console, f"revision {number}")
    return 0
