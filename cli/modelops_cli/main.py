"""`modelops` command line: crd generation, the operator, `doctor` for an installed release,
local serving for development, and the `kubectl modelops` verbs (get, list, logs, steering).

This package is the composition root: the only code that sees both the operator and the builder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .plugin import add_commands


def _cmd_crd(args: argparse.Namespace) -> int:
    from .generated import generated_files, render_crd_yaml, stale_files

    if args.output == "-":
        sys.stdout.write(render_crd_yaml())
        return 0
    files = generated_files(Path(args.output))
    if args.check:
        stale = stale_files(files)
        for path in stale:
            print(f"{path} is out of date: run `modelops crd`", file=sys.stderr)
        return 1 if stale else 0
    for generated in files:
        generated.path.parent.mkdir(parents=True, exist_ok=True)
        generated.path.write_text(generated.text)
        print(f"wrote {generated.path}")
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    from modelops_operator.main import run_operator

    return run_operator(verbose=args.verbose)


def _cmd_dev(args: argparse.Namespace) -> int:
    from .dev import run_dev

    return run_dev(Path(args.file), store=Path(args.store), once=args.once)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return run_doctor(args.release, args.namespace, args.server, context=args.context)


def _cmd_router_agent(args: argparse.Namespace) -> int:
    from .router_agent import run_router_agent

    return run_router_agent(args)


def _cmd_store_keys(args: argparse.Namespace) -> int:
    from .store_keys import run_store_keys

    return run_store_keys(args)


def add_doctor(sub: Any) -> None:
    """`doctor`, on `modelops` and on `kubectl modelops`."""
    doctor = sub.add_parser(
        "doctor",
        help="check an installed release: CRD, namespaces, RBAC, engine server, store, images",
    )
    doctor.add_argument("-n", "--namespace", default="modelops-system", help="release namespace")
    doctor.add_argument("--release", default="modelops", help="Helm release name")
    doctor.add_argument(
        "--server",
        help="API server URL without credentials (`kubectl proxy`); default: your kubeconfig",
    )
    doctor.add_argument("--context", help="kubeconfig context (default: the current one)")
    doctor.set_defaults(func=_cmd_doctor)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `modelops`."""
    parser = argparse.ArgumentParser(prog="modelops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    crd = sub.add_parser(
        "crd", help="generate the CRD, the chart's CRD template and docs/api.md from the models"
    )
    crd.add_argument(
        "-o",
        "--output",
        default="crds/modeldeployments.modelops.dev.yaml",
        help="the CRD file, or - for stdout",
    )
    crd.add_argument("--check", action="store_true", help="exit 1 if any file is out of date")
    crd.set_defaults(func=_cmd_crd)

    op = sub.add_parser("operator", help="run the controller (settings from MODELOPS_* env)")
    op.add_argument("-v", "--verbose", action="store_true")
    op.set_defaults(func=_cmd_operator)

    agent = sub.add_parser(
        "router-agent", help="keep one HAProxy's slots equal to a ModelDeployment's route table"
    )
    agent.add_argument("--socket", required=True, help="HAProxy's admin socket")
    agent.add_argument("--boot", help="the route table file the pod mounts (its ConfigMap)")
    agent.add_argument("--routes", help="the operator's /routes/<namespace>/<name> URL")
    agent.add_argument("--host", default="0.0.0.0", help="listen address of /ready and /metrics")  # noqa: S104
    agent.add_argument("--port", type=int, default=8405)
    agent.set_defaults(func=_cmd_router_agent)

    keys = sub.add_parser(
        "store-keys",
        help="create the store's key Secret when it is missing (the operator's init container)",
    )
    keys.add_argument("--namespace", required=True, help="the release namespace")
    keys.add_argument("--secret", required=True, help="the Secret's name")
    keys.set_defaults(func=_cmd_store_keys)

    add_doctor(sub)
    add_commands(sub)

    dev = sub.add_parser(
        "dev", help="build a ModelDeployment's engine locally and serve it with Triton"
    )
    dev.add_argument("file", help="a ModelDeployment YAML, e.g. examples/cpu-onnxruntime.yaml")
    dev.add_argument("--store", default=".store", help="local engine store (default .store)")
    dev.add_argument("--once", action="store_true", help="exit after the first inference")
    dev.set_defaults(func=_cmd_dev)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    """Run a parsed command: the plugin's verbs through its client, the others directly."""
    if getattr(args, "plugin", None) is not None:
        from .plugin import run

        return run(args, args.plugin)
    code: int = args.func(args)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `modelops` console script."""
    return dispatch(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
