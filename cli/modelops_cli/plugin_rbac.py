"""The API calls each `kubectl modelops` command makes, as RBAC (apiGroup, resource, verb):
docs/cli.md lists them, and the plugin's tests check every call they see against them.

"ns" is the ModelDeployment's namespace (every namespace with `list -A`), "release" the
operator's release namespace (only where builds run). Nothing here needs more than a namespace's
`view` and a patch of ModelDeployments; `get` shows the build Job only where it may list Jobs in
the release namespace, and says so otherwise.
"""

from __future__ import annotations

Call = tuple[str, str, str]
GROUP = "modelops.dev"

READ_TREE: dict[Call, str] = {
    (GROUP, "modeldeployments", "get"): "ns",
    ("apps", "deployments", "list"): "ns",
    ("", "pods", "list"): "ns",
    ("batch", "jobs", "list"): "ns, release (optional)",
    ("", "events", "list"): "ns",
}
STEER: dict[Call, str] = {
    (GROUP, "modeldeployments", "get"): "ns",
    (GROUP, "modeldeployments", "patch"): "ns (metadata.annotations only)",
    ("apps", "deployments", "list"): "ns",
}
NEEDS: dict[str, dict[Call, str]] = {
    "get, get --watch": READ_TREE,
    "list": {(GROUP, "modeldeployments", "list"): "ns (-A: cluster-wide)"},
    "logs --revision N": {
        (GROUP, "modeldeployments", "get"): "ns",
        ("", "pods", "list"): "ns",
        ("", "pods/log", "get"): "ns",
    },
    "logs --build": {
        (GROUP, "modeldeployments", "get"): "ns",
        ("batch", "jobs", "list"): "ns, release",
        ("", "pods", "list"): "ns, release",
        ("", "pods/log", "get"): "ns, release",
    },
    "promote, abort, retry, pause, resume, rollback-to, set-weight": STEER,
}


def every_call() -> frozenset[Call]:
    """Every call any plugin command makes (doctor aside: it is an administrator's check)."""
    return frozenset(call for needs in NEEDS.values() for call in needs)


def needs_of(command: str) -> dict[Call, str]:
    """What one command (its verb, e.g. "promote") needs, in any of its forms."""
    found: dict[Call, str] = {}
    for commands, needs in NEEDS.items():
        if command in {c.strip().split(" ")[0] for c in commands.split(",")}:
            found |= needs
    return found


def describe_needs(command: str) -> str:
    """`verb group/resource (where)`, one per call, for a forbidden answer."""
    return "; ".join(
        f"{verb} {group + '/' if group else ''}{resource} in {where}"
        for (group, resource, verb), where in needs_of(command).items()
    )
