"""`modelops-build`: the build Job's entry point, and a CLI for building an engine by hand."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelops_contract.quantization import CalibrationRequest, DataSetSource
from modelops_contract.request import BuildRequest, BuildSummary, TensorSig

from .cli_tools import TOOLS
from .errors import BuildError
from .job_output import EXIT_INFRA, EXIT_INPUT, EXIT_OK, write_termination_log

EPILOG = """\
modes:
  modelops-build --request FILE|JSON
      What the build Job runs: the BuildRequest as a file or inline JSON (camelCase keys).
      stdout carries only the one-line JSON summary; it is also written to
      $MODELOPS_TERMINATION_LOG, else /dev/termination-log when that file is writable.
  modelops-build MODEL [--sha256 HEX] [--format ...] [--engine ...] [--out STORE] ...
      By hand: MODEL is a path or a file://, https://, s3:// or pvc:// URI. --sha256 is
      optional for a local file (computed and shown). Stages show on stderr, a table at the end.
  modelops-build --request FILE|JSON --into DIR
      The build Job's build step: everything but the publish, into DIR (no store needed).
  modelops-build publish --request FILE|JSON --from DIR
      The build Job's publishing step: seals DIR (sha256 of every file, MAC with
      $MODELOPS_STORE_MAC_KEY) and publishes it; the summary as in Job mode.
  modelops-build stage --request FILE|JSON
      The source Job: fetches the model with the tenant's credentials and streams it to the
      engine server, which answers with a receipt. One summary line.
  modelops-build serve-store --store URI --inbox DIR [--port 8080]
      The engine server (read-only entries, staged sources); $MODELOPS_TRANSFER_KEY.
  modelops-build pull (--server URL --token T --manifest-sha256 HEX | --store URI)
                      --key sha256:HEX [--model NAME] --dest DIR
      What a Triton pod's init container runs: copies the entry's repository/<model>/1/ into
      DIR, engine.json checked against the pinned digest (or the store's MAC key), every file
      against engine.json. One line on stdout. See `modelops-build pull --help`.

exit codes:
  0  built and published, or found complete in the store (cached); pull: copied or in place
  2  bad input: request, model, checksum, signature, accuracy gate; pull: EngineNotFound
  3  infrastructure: download, store, GPU or TensorRT missing, unexpected errors
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelops-build",
        description="Fetch, verify, export, build, gate, profile and publish an inference engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", help="model path or URI (human mode)")
    parser.add_argument("--request", help="BuildRequest JSON, inline or a file (Job mode)")
    parser.add_argument("--sha256", help="expected sha256 (computed for a local file if omitted)")
    parser.add_argument(
        "--format", default="onnx", choices=["onnx", "torchscript", "exported-program"]
    )
    parser.add_argument("--engine", default="onnxruntime", choices=["onnxruntime", "tensorrt"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    parser.add_argument(
        "--calibration", metavar="NPZ", help="int8: calibration set (one array per input)"
    )
    parser.add_argument(
        "--calibration-method", default="minmax", choices=["minmax", "entropy", "percentile"]
    )
    parser.add_argument("--min-agreement", type=float, help="int8 gate: share of equal argmax")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--opt-batch-size", type=int)
    parser.add_argument(
        "--input",
        action="append",
        metavar="NAME:TYPE:DIMS",
        help="input signature, e.g. x:FP32:3,224,224 (repeat per input)",
    )
    parser.add_argument(
        "--output",
        action="append",
        metavar="NAME:TYPE:DIMS",
        help="output signature (repeat per output)",
    )
    parser.add_argument("--atol", type=float)
    parser.add_argument("--rtol", type=float)
    parser.add_argument("--gpu-product")
    parser.add_argument(
        "--allow-fallback",
        action="store_true",
        help="build onnxruntime when tensorrt has no GPU here",
    )
    parser.add_argument("--name", default="model", help="model name in the Triton repository")
    parser.add_argument("--serving-backend", choices=["tensorrt_plan", "onnxruntime", "python"])
    parser.add_argument("--profile-seconds", type=float, default=2.0)
    parser.add_argument("--out", default=".store", help="store directory, file:// or s3:// URI")
    parser.add_argument(
        "--into",
        type=Path,
        help="Job mode, build step: write the unsealed entry here; publish nothing (the "
        "publishing step runs `modelops-build publish`)",
    )
    parser.add_argument(
        "--timing-cache", type=Path, help="build step: a folder of the store's timing caches"
    )
    return parser


def _sig(text: str) -> TensorSig:
    try:
        name, dtype, dims = text.split(":")
        return TensorSig(
            name=name, data_type=dtype.upper(), dims=[int(d) for d in dims.split(",") if d.strip()]
        )
    except ValueError as exc:
        raise BuildError(
            "InvalidRequest", f"{text!r}: want NAME:TYPE:DIMS like x:FP32:3,32,32"
        ) from exc


def _request_from_job(value: str) -> BuildRequest:
    text = value if value.lstrip().startswith("{") else Path(value).read_text()
    return BuildRequest.model_validate(json.loads(text))


def _request_from_flags(args: argparse.Namespace) -> tuple[BuildRequest, str | None]:
    from .fetch import local_path, sha256_file

    computed = None
    sha = args.sha256
    if sha is None:
        path = local_path(args.model)
        if path is None:
            raise BuildError(
                "InvalidRequest", f"--sha256 is required for a remote model ({args.model})"
            )
        try:
            sha = computed = sha256_file(path)
        except OSError as exc:
            raise BuildError("InvalidRequest", f"cannot read {path}: {exc}") from exc
    fields: dict[str, Any] = {
        "source_uri": args.model,
        "sha256": sha,
        "format": args.format,
        "engine": args.engine,
        "precision": args.precision,
        "max_batch_size": args.max_batch_size,
        "opt_batch_size": args.opt_batch_size,
        "gpu_product": args.gpu_product,
        "atol": args.atol,
        "rtol": args.rtol,
        "store": args.out,
        "model_name": args.name,
        "allow_fallback": args.allow_fallback,
        "serving_backend": args.serving_backend,
        "profile_seconds": args.profile_seconds,
        "inputs": [_sig(s) for s in args.input] if args.input else None,
        "outputs": [_sig(s) for s in args.output] if args.output else None,
        "min_agreement": args.min_agreement,
        "calibration": _calibration(args) if args.precision == "int8" else None,
    }
    return BuildRequest(**fields), computed


def _calibration(args: argparse.Namespace) -> CalibrationRequest:
    """--calibration FILE (sha256 computed here, as for a local model) and its method."""
    from .fetch import sha256_file

    data = None
    if args.calibration:
        path = Path(args.calibration)
        data = DataSetSource(source_uri=str(path), sha256=sha256_file(path))
    return CalibrationRequest(data=data, method=args.calibration_method)


def _failure(reason: str, message: str) -> BuildSummary:
    return BuildSummary(ok=False, reason=reason, message=message)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 2 bad input, 3 infrastructure)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] and argv[0] in TOOLS:
        return TOOLS[argv[0]](argv[1:])
    args = _parser().parse_args(argv)
    job_mode = args.request is not None
    if job_mode == (args.model is not None):
        _parser().print_usage(sys.stderr)
        print("modelops-build: give either MODEL or --request", file=sys.stderr)
        return EXIT_INPUT
    logging.basicConfig(
        level=logging.INFO if job_mode else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    code, summary, computed = EXIT_OK, None, None
    result = None
    try:
        if job_mode:
            request = _request_from_job(args.request)
        else:
            request, computed = _request_from_flags(args)
        if job_mode and args.into is not None:
            summary = _produce(request, args.into, args.timing_cache)
        else:
            result = _run(request, human=not job_mode, computed_sha=computed)
            summary = result.summary
    except BuildError as exc:
        code = EXIT_INPUT if exc.kind == "input" else EXIT_INFRA
        summary = _failure(exc.reason, exc.message)
    except ValidationError as exc:
        code, summary = EXIT_INPUT, _failure("InvalidRequest", _validation_text(exc))
    except (OSError, json.JSONDecodeError) as exc:
        code, summary = EXIT_INPUT, _failure("InvalidRequest", f"cannot read the request: {exc}")
    except Exception as exc:  # the summary must still reach the operator
        logging.getLogger(__name__).exception("unexpected failure")
        code, summary = EXIT_INFRA, _failure("InternalError", f"{type(exc).__name__}: {exc}")
    line = summary.to_line()
    write_termination_log(line)
    if job_mode:
        print(line, flush=True)
    else:
        from .cli_display import show_failure, show_result

        if result is not None:
            show_result(result, computed)
        else:
            show_failure(summary, code)
    return code


def _produce(request: BuildRequest, output: Path, timing_cache: Path | None) -> BuildSummary:
    """The build step: the engine into `output`; a summary the publishing step will replace."""
    from .pipeline import produce

    record = produce(request, output, timing_cache=timing_cache)
    return BuildSummary(ok=True, key=record.key, engine=record.engine, precision=record.precision)


def _run(request: BuildRequest, *, human: bool, computed_sha: str | None) -> Any:
    from .pipeline import build

    if not human:
        # Job mode: the request comes from the cluster, so local files stay out of reach.
        return build(request)
    from .cli_display import RichReporter

    with RichReporter(computed_sha) as reporter:
        return build(request, reporter=reporter, local_source=True)


def _validation_text(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return "invalid request: " + "; ".join(parts)
