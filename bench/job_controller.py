"""What the Job controller, the scheduler and the kubelet add for each new Job on a real
cluster: the Job's pod (pulling its image) and the Job's status, each written with its own
field manager, shaped as a real API server returns them (tests/support/server_shapes.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from modelops_operator.k8s import resources as r
from tests.support.server_shapes import job_pod, job_status

AGENT = "kube-controller-manager/v1.36.0 (linux/amd64) kubernetes/controller"


async def _send(api: Any, method: str, path: str, body: dict[str, Any]) -> None:
    headers = {"User-Agent": AGENT}
    if method == "PATCH":
        headers["Content-Type"] = "application/merge-patch+json"
    resp = await api.request(method, path, json=body, headers=headers)
    async with resp:
        assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"


async def run_job_controller(api: Any) -> None:
    """For every Job the emulator stores (api.new_jobs), its pod and its status; forever."""
    count = 0
    while True:
        namespace, name = await api.new_jobs.get()
        await asyncio.sleep(0)  # the Job's POST is stored once its request is served
        job = None
        for _ in range(100):
            try:
                job = api.objects["batch/v1/jobs", namespace, name].last.raw
                break
            except KeyError:
                await asyncio.sleep(0.01)
        if job is None:
            continue
        count += 1
        pod = job_pod(job, f"10.{count // 65536 % 256}.{count // 256 % 256}.{count % 256}")
        # Status goes through the status subresource, as the kubelet and the controller write it.
        status = pod.pop("status", None)
        await _send(api, "POST", r.PODS.path(namespace), pod)
        if status:
            pod_name = pod["metadata"]["name"]
            await _send(
                api, "PATCH", r.PODS.path(namespace, pod_name, "status"), {"status": status}
            )
        await _send(api, "PATCH", r.JOBS.path(namespace, name, "status"), {"status": job_status()})
