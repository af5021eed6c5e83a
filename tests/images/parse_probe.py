"""Run inside an image's venv (its own python, nothing of the tests imported): for each argv of
a JSON list on stdin, call the console script named by argv[0] (or the module of
`python [-FLAGS] -m MODULE`) as the container would, but stop at its argument parser, and report
per argv what happened as one JSON line.

`parsed`: the real parser of the real entry point accepted the whole argv (the command's module
and everything it imports before parsing were imported); `exit N` with the output: the parser
refused it, or `--help` printed its usage (exit 0)."""

import argparse
import contextlib
import io
import json
import runpy
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path


class Parsed(Exception):
    """Raised instead of running the command once its arguments parsed."""


def _stop_after_parsing(original):  # type: ignore[no-untyped-def]
    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        original(self, args, namespace)
        raise Parsed

    return parse_args


def command(argv: list[str]) -> tuple[Callable[[], object], list[str]]:
    """What runs argv, and its sys.argv: a console script, or `python -m MODULE` (the
    interpreter's flags before -m, such as -I, take no value)."""
    if Path(argv[0]).name.startswith("python"):
        rest = argv[1:]
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest = rest[1:]
        assert rest[:1] == ["-m"], f"python without -m MODULE: {argv}"
        module = rest[1]
        return lambda: runpy.run_module(module, run_name="__main__", alter_sys=True), rest[1:]
    (script,) = entry_points(group="console_scripts", name=argv[0])
    return script.load(), list(argv)


def probe(argv: list[str]) -> dict[str, object]:
    run, sys.argv = command(argv)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            run()
    except Parsed:
        return {"argv": argv, "result": "parsed"}
    except SystemExit as exc:
        return {"argv": argv, "result": f"exit {exc.code}", "output": out.getvalue()[:3000]}
    return {"argv": argv, "result": "ran without parsing", "output": out.getvalue()[:3000]}


def main() -> None:
    argparse.ArgumentParser.parse_args = _stop_after_parsing(argparse.ArgumentParser.parse_args)
    for argv in json.load(sys.stdin):
        print(json.dumps(probe(argv)), flush=True)


if __name__ == "__main__":
    main()
