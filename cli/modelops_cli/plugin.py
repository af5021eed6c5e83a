"""`kubectl modelops` (the `kubectl-modelops` console script) and the same verbs under
`modelops`: see a rollout as a tree and steer it with one command.

Every command uses the kubeconfig's current context and namespace, as kubectl does; -n and
--context choose others. docs/cli.md lists the RBAC verbs each command needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape

from modelops_operator.decide.steering_rules import Request, Verb
from modelops_operator.k8s.client import KubeClient
from modelops_operator.k8s.errors import ApiError, ForbiddenError, NotFoundError

from .describe import age, describe
from .kubeconfig import KubeconfigError, Target, load_target
from .logs import build_logs, revision_logs
from .plugin_rbac import describe_needs
from .snapshot import read_all, read_snapshot
from .steer import apply_request, follow
from .tree import render_list, render_tree

RELEASE_NAMESPACE = "modelops-system"
WATCH_INTERVAL = 2.0


def _client(target: Target) -> KubeClient:
    async def connect() -> Any:
        return target.credentials

    return KubeClient(connect, retries=2, user_agent="kubectl-modelops")


async def _get(args: argparse.Namespace, client: KubeClient, target: Target, out: Console) -> int:
    async def document() -> dict[str, Any]:
        found = await read_snapshot(client, target.namespace, args.name, args.release_namespace)
        return describe(found)

    if not args.watch:
        found = await document()
        if args.output == "json":
            out.out(json.dumps(found, indent=2, default=str), highlight=False)
        else:
            out.print(render_tree(found))
        return 0
    last: dict[str, Any] | None = None
    if out.is_terminal:
        with Live(render_tree(await document()), console=out, auto_refresh=False) as live:
            while True:
                await asyncio.sleep(args.interval)
                live.update(render_tree(await document()), refresh=True)
    while True:  # not a terminal: print the tree again whenever it changed (like kubectl -w)
        found = await document()
        if found != last:
            out.print(render_tree(found))
            out.file.flush()
            last = found
        await asyncio.sleep(args.interval)


async def _list(args: argparse.Namespace, client: KubeClient, target: Target, out: Console) -> int:
    every = args.all_namespaces
    items = await read_all(client, None if every else target.namespace)
    items.sort(key=lambda m: (m["metadata"].get("namespace") or "", m["metadata"]["name"]))
    if args.output == "json":
        out.out(json.dumps(items, indent=2), highlight=False)
        return 0
    if not items:
        where = "any namespace" if every else f"namespace {target.namespace}"
        out.print(f"no ModelDeployments in {where}")
        return 0
    now = datetime.now(UTC)
    ages = [age(m["metadata"].get("creationTimestamp"), now) for m in items]
    out.print(render_list(items, ages, every))
    return 0


async def _logs(args: argparse.Namespace, client: KubeClient, target: Target, out: Console) -> int:
    if args.build:
        return await build_logs(
            client, target.namespace, args.name, args.release_namespace, args.tail, out
        )
    return await revision_logs(client, target.namespace, args.name, args.revision, args.tail, out)


async def _steer(args: argparse.Namespace, client: KubeClient, target: Target, out: Console) -> int:
    verb = Verb(args.command)
    number = getattr(args, "number", None)
    # A new value each time: the operator starts a new attempt for a value it has not seen.
    token = str(int(time.time() * 1000))
    request = Request(verb, number, token)
    written = await apply_request(client, target.namespace, args.name, request, out)
    if written is None:
        return 1
    if getattr(args, "wait", False):
        return await follow(client, target.namespace, args.name, written, verb, out, args.timeout)
    return 0


Command = Callable[[argparse.Namespace, KubeClient, Target, Console], Awaitable[int]]


def run(args: argparse.Namespace, command: Command, out: Console | None = None) -> int:
    """Resolve the kubeconfig, run one command, and turn API errors into a message."""
    out = out or Console()
    err = Console(stderr=True)
    try:
        target = load_target(args.context, args.namespace, args.kubeconfig)
    except KubeconfigError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return 1

    async def main() -> int:
        client = _client(target)
        try:
            return await command(args, client, target, out)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except NotFoundError as exc:
        name = getattr(args, "name", "")
        err.print(f"[red]error:[/] {escape(name)} not found in {target.namespace}: {exc.reason}")
    except ForbiddenError as exc:
        needs = describe_needs(str(args.command))
        err.print(f"[red]forbidden:[/] {escape(str(exc))}\n{args.command} needs: {needs}")
    except ApiError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
    except KeyboardInterrupt:
        return 0
    return 1


def _scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")


def add_commands(sub: Any) -> None:
    """The plugin's verbs, on `kubectl-modelops` and on `modelops`."""
    get = sub.add_parser("get", help="a ModelDeployment's rollout as a tree")
    get.add_argument("name")
    get.add_argument("-w", "--watch", action="store_true", help="refresh in place")
    get.add_argument("--interval", type=float, default=WATCH_INTERVAL, help=argparse.SUPPRESS)
    get.add_argument("-o", "--output", choices=["tree", "json"], default="tree")
    get.add_argument("--release-namespace", default=RELEASE_NAMESPACE, help="where builds run")
    get.set_defaults(plugin=_get)
    listing = sub.add_parser("list", help="ModelDeployments with their weights and last decision")
    listing.add_argument("-A", "--all-namespaces", action="store_true")
    listing.add_argument("-o", "--output", choices=["table", "json"], default="table")
    listing.set_defaults(plugin=_list)
    logs = sub.add_parser("logs", help="the build's logs, or a revision's Triton logs")
    logs.add_argument("name")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--build", action="store_true", help="the source and build Jobs' logs")
    which.add_argument("--revision", type=int, help="this revision (default: the newest)")
    logs.add_argument("--tail", type=int, default=None, help="the last N lines of each")
    logs.add_argument("--release-namespace", default=RELEASE_NAMESPACE, help="where builds run")
    logs.set_defaults(plugin=_logs)
    helps = {
        Verb.PROMOTE: "skip the candidate's remaining canary steps",
        Verb.ABORT: "roll the candidate back now; the old revision keeps serving",
        Verb.RETRY: "try the current generation again after a rollback or a failed build",
        Verb.PAUSE: "hold the canary at its step",
        Verb.RESUME: "let a paused (or manually weighted) canary go on",
        Verb.ROLLBACK_TO: "serve an earlier revision again at once",
        Verb.SET_WEIGHT: "hold the canary at PERCENT of requests (a manual step)",
    }
    for verb, text in helps.items():
        parser = sub.add_parser(verb.value, help=text)
        parser.add_argument("name")
        if verb in (Verb.ROLLBACK_TO, Verb.SET_WEIGHT):
            metavar = "REVISION" if verb == Verb.ROLLBACK_TO else "PERCENT"
            parser.add_argument("number", type=int, metavar=metavar)
        if verb not in (Verb.PAUSE, Verb.SET_WEIGHT):
            parser.add_argument("--wait", action="store_true", help="follow until it settles")
            parser.add_argument("--timeout", type=float, default=600.0, help="seconds (--wait)")
        parser.set_defaults(plugin=_steer)
    for parser in sub.choices.values():
        if parser.get_default("plugin") is not None:
            _scope(parser)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `kubectl modelops`."""
    from .main import add_doctor

    parser = argparse.ArgumentParser(prog="kubectl modelops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    add_doctor(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kubectl-modelops` console script."""
    from .main import dispatch

    return dispatch(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
