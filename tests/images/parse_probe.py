"""Run inside an image's venv (its own python, nothing of the tests imported): for each argv of
a JSON list on stdin, call the console script named by argv[0] as the container would, but stop
at its argument parser, and report per argv what happened as one JSON line.

`parsed`: the real parser of the real entry point accepted the whole argv (the command's module
and everything it imports before parsing were imported); `exit N` with the output: the parser
refused it, or `--help` printed its usage (exit 0)."""

import argparse
import contextlib
import io
import json
import sys
from importlib.metadata import entry_points


class Parsed(Exception):
    """Raised instead of running the command once its arguments parsed."""


def _stop_after_parsing(original):  # type: ignore[no-untyped-def]
    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def]
        original(self, args, namespace)
        raise Parsed

    return parse_args


def probe(argv: list[str]) -> dict[str, object]:
    (script,) = entry_points(group="console_scripts", name=argv[0])
    out = io.StringIO()
    sys.argv = list(argv)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            script.load()()
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
