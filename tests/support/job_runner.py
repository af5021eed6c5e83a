"""The Job controller and the kubelet for one Job the operator rendered: every container of its
pod run for real, in order, until one fails (pod_runner.py), and the Job finished with the
termination message its last container left."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from modelops_operator.k8s import resources as r
from tests.support.kubernetes_emulator import Cluster, eventually
from tests.support.pod_runner import Ran, Secrets, pod_containers, run_container


async def finish(cluster: Cluster, job: str, namespace: str, ran: Ran) -> None:
    """The Job controller's final status, with the termination message the container left."""
    summary = json.loads(ran.message.strip().splitlines()[-1])
    await cluster.finish_job(job, summary, ok=ran.returncode == 0, namespace=namespace)


async def run_job(
    cluster: Cluster,
    name: str,
    namespace: str,
    volumes: dict[str, Path],
    workdir: Path,
    secrets: Secrets,
) -> list[Ran]:
    """The kubelet for one Job's pod: every container in order, until one fails."""
    await eventually(lambda: cluster.get(r.JOBS, name, namespace), 20, f"Job {name}")
    job = cluster.get(r.JOBS, name, namespace)
    assert job is not None
    done = []
    for container in pod_containers(job).values():
        ran = await asyncio.to_thread(
            run_container, container, volumes, workdir, secrets=secrets, timeout=600
        )
        done.append(ran)
        if ran.returncode != 0:
            break
    await finish(cluster, name, namespace, done[-1])
    return done
