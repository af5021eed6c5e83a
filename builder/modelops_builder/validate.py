"""`modelops-build validate`: send a known set to every candidate pod and judge the answers.

The builder's own set (validation.npz of the entry) must come back equal to the fp32 reference
within the build's tolerances, from every pod, at the set's batch and at batch 1. A user's set
(spec.validation) must reach its minimum accuracy (argmax against labels) or agreement (outputs
within the tolerances). Sets are read with numpy's pickle refused.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelops_contract.validation import (
    INPUT_PREFIX,
    LABELS,
    OUTPUT_PREFIX,
    ValidationRequest,
    ValidationSummary,
)

from .errors import BuildError
from .gate import compare

Arrays = dict[str, Any]


@dataclass(frozen=True)
class Served:
    """One pod's answers to one set."""

    target: str
    outputs: Arrays


def load_set(path: Path) -> Arrays:
    """An .npz file's arrays; pickled object arrays are refused."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise BuildError("InvalidValidationSet", f"{path.name}: not a plain .npz: {exc}") from exc


def _infer(target: str, model: str, feeds: Arrays, outputs: list[str], timeout: float) -> Arrays:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    client = grpcclient.InferenceServerClient(target)
    try:
        tensors = []
        for name, array in feeds.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            tensors.append(tensor)
        wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
        result = client.infer(model, tensors, outputs=wanted, client_timeout=timeout)
        return {name: result.as_numpy(name) for name in outputs}
    except InferenceServerException as exc:
        text = str(exc)
        message = f"pod {target}: {text[:500]}"
        if "UNAVAILABLE" in text or "DEADLINE" in text:
            raise BuildError("ValidationUnreachable", message, "infrastructure") from exc
        raise BuildError("ValidationFailed", message) from exc
    finally:
        client.close()


def serve_set(request: ValidationRequest, feeds: Arrays, outputs: list[str]) -> list[Served]:
    """Every pod's answers: the whole set in batches of at most max batch, then sample 0 alone."""
    samples = len(next(iter(feeds.values())))
    answers = []
    for target in request.targets:
        parts: dict[str, list[Any]] = {name: [] for name in outputs}
        for start in range(0, samples, request.max_batch_size):
            batch = {k: v[start : start + request.max_batch_size] for k, v in feeds.items()}
            got = _infer(target, request.model_name, batch, outputs, request.timeout_seconds)
            for name in outputs:
                parts[name].append(got[name])
        single = {k: v[:1] for k, v in feeds.items()}
        alone = _infer(target, request.model_name, single, outputs, request.timeout_seconds)
        joined = {name: np.concatenate(parts[name]) for name in outputs}
        for name in outputs:
            _, _, failure = compare(name, alone[name], joined[name][:1], request.atol, request.rtol)
            if failure:
                raise BuildError(
                    "ValidationFailed", f"pod {target} answers batch 1 differently: {failure}"
                )
        answers.append(Served(target, joined))
    return answers


def check_reference(request: ValidationRequest, arrays: Arrays) -> ValidationSummary:
    """The builder's set: every pod within tolerance of the fp32 reference."""
    feeds = {
        k.removeprefix(INPUT_PREFIX): v for k, v in arrays.items() if k.startswith(INPUT_PREFIX)
    }
    expected = {
        k.removeprefix(OUTPUT_PREFIX): v for k, v in arrays.items() if k.startswith(OUTPUT_PREFIX)
    }
    if not feeds or not expected:
        raise BuildError("InvalidValidationSet", "the entry's validation set has no inputs/outputs")
    worst_abs = worst_rel = 0.0
    for served in serve_set(request, feeds, sorted(expected)):
        for name, want in expected.items():
            abs_err, rel_err, failure = compare(
                name, served.outputs[name], want, request.atol, request.rtol
            )
            worst_abs, worst_rel = max(worst_abs, abs_err), max(worst_rel, rel_err)
            if failure:
                raise BuildError(
                    "ValidationFailed",
                    f"pod {served.target} serves wrong answers: {failure} "
                    f"(atol {request.atol:g}, rtol {request.rtol:g})",
                )
    return ValidationSummary(
        ok=True,
        samples=len(next(iter(feeds.values()))),
        pods=len(request.targets),
        max_abs_error=worst_abs,
        max_rel_error=worst_rel,
    )


def _share(flags: Any) -> float:
    return float(np.mean(np.asarray(flags, dtype=np.float64))) if np.size(flags) else 0.0


def _user_arrays(request: ValidationRequest, arrays: Mapping[str, Any]) -> tuple[Arrays, int]:
    missing = sorted(set(request.inputs) - set(arrays))
    if missing:
        raise BuildError(
            "InvalidValidationSet",
            f"spec.validation: the set lacks input arrays {missing} (it has {sorted(arrays)})",
        )
    feeds = {name: arrays[name] for name in request.inputs}
    sizes = {len(v) for v in feeds.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise BuildError("InvalidValidationSet", "spec.validation: input arrays differ in length")
    return feeds, sizes.pop()


def check_user_set(request: ValidationRequest, arrays: Mapping[str, Any]) -> dict[str, float]:
    """spec.validation on every pod (the worst pod counts): accuracy or agreement."""
    goal = request.user_set
    assert goal is not None
    feeds, samples = _user_arrays(request, arrays)
    if goal.min_accuracy is not None:
        labels = arrays.get(LABELS)
        if labels is None or len(labels) != samples:
            raise BuildError(
                "InvalidValidationSet",
                f"spec.validation: minAccuracy needs a '{LABELS}' array of {samples} classes",
            )
        first = request.outputs[0]
        accuracy = min(
            _share(np.argmax(s.outputs[first].reshape(samples, -1), axis=1) == labels)
            for s in serve_set(request, feeds, [first])
        )
        if accuracy < goal.min_accuracy:
            raise BuildError(
                "ValidationFailed",
                f"spec.validation: accuracy {accuracy:.4f} < minAccuracy {goal.min_accuracy:g}",
            )
        return {"accuracy": accuracy}
    expected = {name: arrays[name] for name in request.outputs if name in arrays}
    if not expected:
        raise BuildError(
            "InvalidValidationSet",
            f"spec.validation: minAgreement needs expected output arrays {request.outputs}",
        )
    agreement = 1.0
    for served in serve_set(request, feeds, sorted(expected)):
        agree = np.ones(samples, dtype=bool)
        for name, want in expected.items():
            got = np.asarray(served.outputs[name], np.float64).reshape(samples, -1)
            want64 = np.asarray(want, np.float64).reshape(samples, -1)
            agree &= (np.abs(got - want64) <= request.atol + request.rtol * np.abs(want64)).all(1)
        agreement = min(agreement, _share(agree))
    assert goal.min_agreement is not None
    if agreement < goal.min_agreement:
        raise BuildError(
            "ValidationFailed",
            f"spec.validation: agreement {agreement:.4f} < minAgreement {goal.min_agreement:g}",
        )
    return {"agreement": agreement}


def reference_set(request: ValidationRequest, work: Path) -> Arrays:
    """The entry's set: a local file, or read from the engine server and checked against the
    sha256 of the verified engine.json (the validation Job never sees the store)."""
    where = request.reference_set
    if not where.startswith(("http://", "https://")):
        return load_set(Path(where))
    if request.reference_sha256 is None:
        raise BuildError("InvalidRequest", "a reference set URL needs referenceSha256")
    import hashlib
    import urllib.request

    call = urllib.request.Request(  # noqa: S310 - the engine server's in-cluster URL
        where, headers={"Authorization": f"Bearer {request.reference_token or ''}"}
    )
    path, digest = work / "reference.npz", hashlib.sha256()
    try:
        with urllib.request.urlopen(call, timeout=60) as response, path.open("wb") as out:  # noqa: S310
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise BuildError(
            "ValidationUnreachable", f"cannot read the entry's set {where}: {exc}", "infrastructure"
        ) from exc
    if digest.hexdigest() != request.reference_sha256:
        raise BuildError(
            "EngineTampered",
            f"{where}: sha256 {digest.hexdigest()[:12]}... is not engine.json's "
            f"{request.reference_sha256[:12]}...",
            "infrastructure",
        )
    return load_set(path)


def validate(request: ValidationRequest, *, local_source: bool = False) -> ValidationSummary:
    """Run the whole validation; BuildError on any failure (its reason and message say why).

    `local_source` lets a user set be a local file (tests); the Job never sets it."""
    with tempfile.TemporaryDirectory(prefix="modelops-reference-") as work:
        summary = check_reference(request, reference_set(request, Path(work)))
    if request.user_set is None:
        return summary
    from .fetch import fetch

    with tempfile.TemporaryDirectory(prefix="modelops-validate-") as work:
        path = fetch(
            request.user_set.source_uri,
            request.user_set.sha256,
            Path(work) / "user.npz",
            max_bytes=2 * 1024**3,
            local_source=local_source,
        )
        figures = check_user_set(request, load_set(path))
    return summary.model_copy(update=figures)
