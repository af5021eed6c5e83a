"""Triton python-backend model: run `model.onnx` with ONNX Runtime on CPU.

Copied beside the ONNX graph into `repository/<model>/1/` by the builder; Triton's python stub
imports it (`triton_python_backend_utils` exists only there). All requests of one `execute` call
(a dynamic batch) are concatenated into one ONNX Runtime run when their shapes agree, and the
outputs are split back per request. A failure of some requests is reported to those as a
`TritonError` response; when every request of the call fails, `execute` raises (Triton then
answers each with the error and counts it as failed). Triton catches what `execute` raises, so
the stub stays up either way.

Settings, from the environment first, then from config.pbtxt `parameters`:
- MODELOPS_ORT_THREADS / `ort_intra_op_threads`: ONNX Runtime intra-op threads (0 = ORT's default,
  one per physical core, which gave the best throughput on the 2-core benchmark machine).
- MODELOPS_ORT_SPINNING / `ort_allow_spinning`: "1" lets idle ORT threads spin (ORT's default);
  "0" makes them sleep, which leaves the cores to Triton and clients between batches.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

Array = npt.NDArray[Any]
DEFAULT_MODEL_FILE = "model.onnx"
THREADS_ENV, THREADS_PARAM = "MODELOPS_ORT_THREADS", "ort_intra_op_threads"
SPINNING_ENV, SPINNING_PARAM = "MODELOPS_ORT_SPINNING", "ort_allow_spinning"
# onnxruntime 1.31 on CPU crashes at session creation on fp16 graphs where a 3-D Transpose feeds a
# MatMul with an fp16 weight (attention projections) unless this fusion is skipped; the builder
# skips it too (modelops_builder.engines.ORT_DISABLED_OPTIMIZERS).
DISABLED_OPTIMIZERS = ["MatmulTransposeFusion"]

# ONNX Runtime's type strings -> numpy, to feed each input in the dtype the graph declares.
_ORT_NUMPY: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _parameter(config: dict[str, Any], key: str) -> str | None:
    """A config.pbtxt `parameters` string value, or None."""
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return str(value) if value not in (None, "") else None


def _setting(config: dict[str, Any], env: str, key: str, default: str) -> str:
    """Environment first (an operator can tune a pod without a new config), then config."""
    return os.environ.get(env) or _parameter(config, key) or default


class TritonPythonModel:
    """One model instance: one ONNX Runtime session."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the ONNX graph named by the `model_file` parameter from the version folder."""
        config: dict[str, Any] = json.loads(args["model_config"])
        self.name = str(config.get("name", "model"))
        self.max_batch_size = int(config.get("max_batch_size", 0))
        model_file = _parameter(config, "model_file") or DEFAULT_MODEL_FILE
        path = Path(args["model_repository"]) / str(args["model_version"]) / model_file
        if not path.is_file():
            raise pb_utils.TritonModelException(f"{self.name}: model file {path} not found")

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(_setting(config, THREADS_ENV, THREADS_PARAM, "0"))
        # One graph run at a time per instance: parallelism comes from intra-op threads and
        # from Triton instances, never from ORT's inter-op pool fighting them for cores.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        spinning = _setting(config, SPINNING_ENV, SPINNING_PARAM, "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        self.session = ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=DISABLED_OPTIMIZERS,
        )
        self.input_types = {i.name: _ORT_NUMPY.get(i.type) for i in self.session.get_inputs()}
        self.output_names = [str(o["name"]) for o in config.get("output", [])] or [
            o.name for o in self.session.get_outputs()
        ]
        self.input_names = [i["name"] for i in config.get("input", [])] or list(self.input_types)
        # Cast outputs to what config.pbtxt promises clients (the graph may compute in fp16).
        self.output_types = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"])
            for o in config.get("output", [])
        }

    def execute(self, requests: list[Any]) -> list[Any]:
        """One response per request, in order; shape-compatible requests share one ORT run."""
        responses: list[Any] = [None] * len(requests)
        groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Array]]]] = {}
        for index, request in enumerate(requests):
            try:
                feeds = self._feeds(request)
            except Exception as exc:  # reported to the client: the stub stays up
                responses[index] = _error(f"{self.name}: bad request: {exc}")
                continue
            # Without a batch axis (max_batch_size 0) requests cannot be concatenated.
            key: tuple[Any, ...] = (
                tuple((n, a.shape[1:], a.dtype.str) for n, a in feeds.items())
                if self.max_batch_size > 0
                else (index,)
            )
            groups.setdefault(key, []).append((index, feeds))
        for members in groups.values():
            for index, response in self._run_group(members):
                responses[index] = response
        failed = [r for r in responses if isinstance(r, _ErrorResponse)]
        if failed and len(failed) == len(responses):
            # Triton's python backend counts a request answered with an error response as a
            # success (nv_inference_request_success, not nv_inference_request_failure); raising
            # makes it count as failed, so canary analysis sees a model that fails every
            # request. Partial failures stay per request (isolated).
            raise pb_utils.TritonModelException(failed[0].message)
        return [r.response if isinstance(r, _ErrorResponse) else r for r in responses]

    def finalize(self) -> None:
        """Release the session (Triton calls this on unload and shutdown)."""
        self.session = None

    def _feeds(self, request: Any) -> dict[str, Array]:
        feeds: dict[str, Array] = {}
        for name in self.input_names:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"missing input {name!r}")
            array = tensor.as_numpy()
            wanted = self.input_types.get(name)
            feeds[name] = array if wanted is None or array.dtype == wanted else array.astype(wanted)
        return feeds

    def _run_group(self, members: list[tuple[int, dict[str, Array]]]) -> list[tuple[int, Any]]:
        """Run a group as one batch; if that fails, run each request alone to attribute errors."""
        if len(members) > 1:
            batched = self._run_batched(members)
            if batched is not None:
                return batched
        results: list[tuple[int, Any]] = []
        for index, feeds in members:
            try:
                results.append((index, self._response(self._run(feeds))))
            except Exception as exc:  # reported to the client: the stub stays up
                results.append((index, _error(f"{self.name}: inference failed: {exc}")))
        return results

    def _run_batched(
        self, members: list[tuple[int, dict[str, Array]]]
    ) -> list[tuple[int, Any]] | None:
        """One ORT run over all requests; None when it fails or an output has no batch axis."""
        sizes = [int(next(iter(feeds.values())).shape[0]) for _, feeds in members]
        batch = {
            name: np.concatenate([feeds[name] for _, feeds in members]) for name in members[0][1]
        }
        try:
            outputs = self._run(batch)
        except Exception:  # one bad request must not fail the others: the caller retries alone
            return None
        if any(a.ndim == 0 or a.shape[0] != sum(sizes) for a in outputs.values()):
            return None
        splits = np.cumsum(sizes)[:-1]
        parts = {name: np.split(array, splits) for name, array in outputs.items()}
        return [
            (index, self._response({name: parts[name][k] for name in parts}))
            for k, (index, _) in enumerate(members)
        ]

    def _run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        values = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, values, strict=True))

    def _response(self, outputs: dict[str, Array]) -> Any:
        tensors = []
        for name, array in outputs.items():
            wanted = self.output_types.get(name)
            value = array if wanted is None or array.dtype == wanted else array.astype(wanted)
            tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(value)))
        return pb_utils.InferenceResponse(output_tensors=tensors)


@dataclass(frozen=True)
class _ErrorResponse:
    """A failed request's response, kept recognisable until execute() decides how to report."""

    message: str
    response: Any


def _error(message: str) -> _ErrorResponse:
    error = pb_utils.TritonError(message)
    return _ErrorResponse(message, pb_utils.InferenceResponse(output_tensors=[], error=error))
