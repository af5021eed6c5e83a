"""`modelops-build` subcommands that are not a build: pull, validate, stage, publish,
serve-store. Each prints one line (a summary or a human line) and exits 0, 2 or 3 like a build.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from modelops_contract.termination import termination_line
from modelops_contract.wire import WireModel

from .errors import BuildError
from .job_output import EXIT_INFRA, EXIT_INPUT, EXIT_OK, write_termination_log

log = logging.getLogger(__name__)


def _request_text(value: str) -> str:
    return value if value.lstrip().startswith("{") else Path(value).read_text()


def _logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _summarised(run: Callable[[], WireModel], failure: Callable[[str, str], WireModel]) -> int:
    """Run, then leave the one summary line (stdout and termination log); the exit code."""
    code = EXIT_OK
    try:
        summary = run()
    except BuildError as exc:
        code = EXIT_INPUT if exc.kind == "input" else EXIT_INFRA
        summary = failure(exc.reason, exc.message)
    except (ValidationError, OSError, ValueError) as exc:
        code, summary = EXIT_INPUT, failure("InvalidRequest", str(exc)[:2000])
    except Exception as exc:  # the summary must still reach the operator
        log.exception("unexpected failure")
        code, summary = EXIT_INFRA, failure("InternalError", f"{type(exc).__name__}: {exc}")
    line = termination_line(summary)
    write_termination_log(line)
    print(line, flush=True)
    return code


def pull_main(argv: list[str]) -> int:
    """`modelops-build pull ...`: one line on stdout when done, one on stderr when failed."""
    from .pull import open_source, pull

    parser = argparse.ArgumentParser(
        prog="modelops-build pull",
        description="Copy a published engine's repository/<model>/1/ into DEST, every file "
        "checked against engine.json, and engine.json against --manifest-sha256 (or the "
        "store's MAC key in MODELOPS_STORE_MAC_KEY).",
        epilog="exit codes: 0 copied (or already in place), 2 no complete entry for the key "
        "(EngineNotFound), nothing to verify it with, or bad arguments, 3 store unreachable, "
        "copy failed, or the entry is not what was published (EngineTampered)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", help="the engine server's base URL (Triton pods)")
    source.add_argument("--store", help="a store directory, file:// or s3:// URI")
    parser.add_argument("--token", help="the entry's read token (with --server)")
    parser.add_argument("--manifest-sha256", help="the sha256 of engine.json the operator pinned")
    parser.add_argument("--key", required=True, help="engine key, sha256:<hex>")
    parser.add_argument("--model", help="model name the entry was built with (informative)")
    parser.add_argument("--dest", required=True, type=Path, help="directory to fill (created)")
    args = parser.parse_args(argv)
    _logging(logging.WARNING)
    try:
        entry = open_source(args.key, store=args.store, server=args.server, token=args.token)
        result = pull(entry, args.key, args.dest, args.model, manifest_sha256=args.manifest_sha256)
    except BuildError as exc:
        code, line = (EXIT_INPUT if exc.kind == "input" else EXIT_INFRA), str(exc)
    except Exception as exc:  # the init container's log must still say why
        log.exception("unexpected failure")
        code, line = EXIT_INFRA, f"InternalError: {type(exc).__name__}: {exc}"
    else:
        print(result.line(), flush=True)
        return EXIT_OK
    line = f"modelops-build pull: {line}"
    write_termination_log(line)
    print(line, file=sys.stderr, flush=True)
    return code


def validate_main(argv: list[str]) -> int:
    """`modelops-build validate --request JSON`: the validation Job; one summary line."""
    from modelops_contract.validation import ValidationRequest, ValidationSummary

    from .validate import validate

    parser = argparse.ArgumentParser(prog="modelops-build validate")
    parser.add_argument("--request", required=True, help="ValidationRequest JSON, inline or a file")
    args = parser.parse_args(argv)
    _logging()
    return _summarised(
        lambda: validate(ValidationRequest.model_validate_json(_request_text(args.request))),
        lambda reason, message: ValidationSummary(ok=False, reason=reason, message=message),
    )


def stage_main(argv: list[str]) -> int:
    """`modelops-build stage --request JSON`: the source Job; one summary line."""
    from modelops_contract.staging import StageRequest, StageSummary

    from .stage import stage

    parser = argparse.ArgumentParser(prog="modelops-build stage")
    parser.add_argument("--request", required=True, help="StageRequest JSON, inline or a file")
    args = parser.parse_args(argv)
    _logging()
    return _summarised(
        lambda: stage(StageRequest.model_validate_json(_request_text(args.request))),
        lambda reason, message: StageSummary(ok=False, reason=reason, message=message),
    )


def publish_main(argv: list[str]) -> int:
    """`modelops-build publish --request JSON --from DIR`: the publishing step."""
    from modelops_contract.request import BuildRequest, BuildSummary

    from .publish import publish_output

    parser = argparse.ArgumentParser(prog="modelops-build publish")
    parser.add_argument("--request", required=True, help="BuildRequest JSON, inline or a file")
    parser.add_argument("--from", dest="source", required=True, type=Path, help="build output")
    args = parser.parse_args(argv)
    _logging()
    return _summarised(
        lambda: publish_output(
            BuildRequest.model_validate_json(_request_text(args.request)), args.source
        ),
        lambda reason, message: BuildSummary(ok=False, reason=reason, message=message),
    )


_UNITS = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def byte_quantity(text: str) -> int:
    """Bytes from `123`, `64Ki`, `20Gi` (the chart's quantities); ValueError otherwise."""
    number = text.rstrip("KMGTi")
    unit = text[len(number) :]
    if unit not in _UNITS or not number.isdigit():
        raise ValueError(f"not a byte quantity: {text!r} (e.g. 1048576 or 20Gi)")
    return int(number) * _UNITS[unit]


def serve_store_main(argv: list[str]) -> int:
    """`modelops-build serve-store`: run the engine server until interrupted."""
    from modelops_contract import integrity

    from .inbox import Quotas
    from .store import open_store
    from .store_server import TRANSFER_KEY_ENV, ServerConfig, serve

    parser = argparse.ArgumentParser(prog="modelops-build serve-store")
    parser.add_argument("--store", required=True, help="store directory, file:// or s3:// URI")
    parser.add_argument("--inbox", required=True, type=Path, help="folder of staged sources")
    parser.add_argument("--host", default="0.0.0.0", help="listen address")  # noqa: S104
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-source-bytes", type=byte_quantity, default=20 * 1024**3)
    parser.add_argument("--inbox-ttl-seconds", type=float, default=6 * 3600.0)
    defaults = Quotas()
    parser.add_argument(
        "--inbox-bytes",
        type=byte_quantity,
        default=defaults.total_bytes,
        help="staged and reserved bytes in all (keep it below the inbox volume's size)",
    )
    parser.add_argument(
        "--namespace-inbox-bytes", type=byte_quantity, default=defaults.namespace_bytes
    )
    parser.add_argument("--max-uploads", type=int, default=defaults.total_uploads)
    parser.add_argument("--namespace-max-uploads", type=int, default=defaults.namespace_uploads)
    parser.add_argument("--read-timeout-seconds", type=float, default=30.0)
    parser.add_argument("--min-upload-rate", type=byte_quantity, default=64 * 1024)
    args = parser.parse_args(argv)
    _logging()
    try:
        key = integrity.key_bytes(os.environ.get(TRANSFER_KEY_ENV, ""))
    except integrity.IntegrityError as exc:
        print(f"modelops-build serve-store: {TRANSFER_KEY_ENV}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    config = ServerConfig(
        store=open_store(args.store),
        inbox=args.inbox,
        transfer_key=key,
        max_source_bytes=args.max_source_bytes,
        inbox_ttl_seconds=args.inbox_ttl_seconds,
        quotas=Quotas(
            total_bytes=args.inbox_bytes,
            namespace_bytes=args.namespace_inbox_bytes,
            total_uploads=args.max_uploads,
            namespace_uploads=args.namespace_max_uploads,
        ),
        read_timeout_seconds=args.read_timeout_seconds,
        min_upload_rate=args.min_upload_rate,
    )
    serve(config, args.host, args.port)
    return EXIT_OK


def timing_cache_main(argv: list[str]) -> int:
    """`modelops-build timing-cache`: the tenant's sealed TensorRT timing cache for a build."""
    from .timing_cache import fetch_main

    return fetch_main(argv)


TOOLS: dict[str, Callable[[list[str]], int]] = {
    "timing-cache": timing_cache_main,
    "pull": pull_main,
    "validate": validate_main,
    "stage": stage_main,
    "publish": publish_main,
    "serve-store": serve_store_main,
}
