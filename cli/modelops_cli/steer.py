"""The steering commands: one annotation write each, refused when it makes no sense now.

The rules and the sentence printed are decide/steering_rules.py's; this module reads the
ModelDeployment, writes the merge patch conditioned on the resourceVersion it decided on (a
change in between is read again and decided again), and with --wait follows the status until
the rollout settles.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from modelops_operator.api import ModelDeployment
from modelops_operator.decide.steering_rules import Refusal, Request, Verb, steer
from modelops_operator.k8s.client import KubeClient
from modelops_operator.k8s.errors import ConflictError
from modelops_operator.k8s.resources import DEPLOYMENTS, MODELDEPLOYMENTS
from modelops_operator.render.common import owner_labels
from modelops_operator.render.names import revision_of

Obj = dict[str, Any]
ATTEMPTS = 4
SETTLED = ("Ready", "RolledBack", "Failed", "Degraded", "Idle")
# What each command waits for: the rollout leaving the state it was written in, then one of.
SUCCESS = {
    Verb.ABORT: ("RolledBack",),
    Verb.ROLLBACK_TO: ("RolledBack", "Ready"),
}


async def revisions_with_deployment(
    client: KubeClient, namespace: str, name: str
) -> frozenset[int]:
    """Revision numbers whose Deployment exists."""
    found = await client.list(DEPLOYMENTS, namespace, owner_labels(name))
    numbers = (revision_of(d["metadata"]["name"]) for d in found)
    return frozenset(n for n in numbers if n is not None)


async def apply_request(
    client: KubeClient, namespace: str, name: str, request: Request, console: Console
) -> Obj | None:
    """Decide and write; the ModelDeployment as written, or None when refused."""
    for _ in range(ATTEMPTS):
        body = await client.get(MODELDEPLOYMENTS, namespace, name)
        try:
            md = ModelDeployment.from_body(body)
        except ValueError as exc:
            console.print(f"[red]refused:[/] {name}'s spec is invalid, fix it first: {exc}")
            return None
        answer = steer(md, request, await revisions_with_deployment(client, namespace, name))
        if isinstance(answer, Refusal):
            console.print(f"[red]refused:[/] {escape(answer.reason)}")
            return None
        patch = {"metadata": {"annotations": answer.annotations}}
        version = body["metadata"].get("resourceVersion")
        try:
            written = await client.merge_patch(
                MODELDEPLOYMENTS, namespace, name, patch, resource_version=version
            )
        except ConflictError:
            continue  # changed since it was read: decide again on the new state
        console.print(f"{escape(name)}: {escape(answer.says)}")
        return written
    console.print(f"[red]{escape(name)} kept changing; try again[/]")
    return None


def _summary(status: Obj) -> str:
    phase = status.get("phase") or "Pending"
    revision = status.get("revision") or {}
    rolled: Obj = next((c for c in status.get("conditions") or [] if c["type"] == "RolledOut"), {})
    where = f"current {revision.get('current')}"
    if revision.get("candidate") is not None:
        where += f", candidate {revision['candidate']}"
    return f"{phase} ({where}): {rolled.get('message') or status.get('message') or ''}"


async def follow(
    client: KubeClient,
    namespace: str,
    name: str,
    written: Obj,
    verb: Verb,
    console: Console,
    within: float,
    interval: float = 1.0,
) -> int:
    """Print each change of the rollout until it settles: 0 when it ended as asked."""
    before = written.get("status") or {}
    changed = False
    last = ""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = (await client.get(MODELDEPLOYMENTS, namespace, name)).get("status") or {}
        changed = changed or status != before
        line = _summary(status)
        if line != last:
            console.print(escape(line))
            last = line
        candidate = (status.get("revision") or {}).get("candidate")
        if changed and candidate is None and status.get("phase") in SETTLED:
            wanted = SUCCESS.get(verb, ("Ready",))
            return 0 if status.get("phase") in wanted else 1
        await asyncio.sleep(interval)
    console.print(f"[red]{escape(name)} did not settle within {within:.0f}s[/]")
    return 1
