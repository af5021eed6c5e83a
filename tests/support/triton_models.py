"""Write python-backend Triton models for the integration tests.

The fault model fails every `fail_every`-th execute call and sleeps `sleep_s` per call: a
deterministic stand-in for a bad canary revision. It has no dynamic batching, so each execute
carries exactly one request and the failure fraction is exact whatever the client concurrency.

It fails by raising from `execute`: Triton 2.51's python backend counts a per-response
`InferenceResponse(error=...)` as a *success* in nv_inference_request_success, and only a
raised exception reaches nv_inference_request_failure{reason="BACKEND"} (checked on the real
server). A canary analysis built on the metrics has to see the failures, so we raise.
"""

from __future__ import annotations

from pathlib import Path

INPUT_NAME = "x"
OUTPUT_NAME = "y"
WIDTH = 4

_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input [{{ name: "{inp}", data_type: TYPE_FP32, dims: [ {width} ] }}]
output [{{ name: "{out}", data_type: TYPE_FP32, dims: [ {width} ] }}]
instance_group [{{ count: 1, kind: KIND_CPU }}]
{batching}"""

_MODEL = """\
import time

import triton_python_backend_utils as pb_utils

FAIL_EVERY = {fail_every}
SLEEP_S = {sleep_s!r}
SCALE = {scale!r}


class TritonPythonModel:
    def initialize(self, args):
        self.calls = 0

    def execute(self, requests):
        self.calls += 1
        if SLEEP_S:
            time.sleep(SLEEP_S)
        if FAIL_EVERY and self.calls % FAIL_EVERY == 0:
            raise pb_utils.TritonModelException("injected failure")
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "{inp}").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("{out}", x * SCALE)]))
        return responses
"""


def write_model(
    repo: Path,
    name: str,
    *,
    fail_every: int = 0,
    sleep_s: float = 0.0,
    scale: float = 2.0,
    width: int = WIDTH,
) -> Path:
    """Write repo/NAME/{config.pbtxt,1/model.py}: y = x * scale; fail_every=0 never fails."""
    folder = repo / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    batching = "" if fail_every else "dynamic_batching { max_queue_delay_microseconds: 100 }\n"
    config = _CONFIG.format(
        name=name, inp=INPUT_NAME, out=OUTPUT_NAME, width=width, batching=batching
    )
    (folder / "config.pbtxt").write_text(config)
    source = _MODEL.format(
        fail_every=int(fail_every),
        sleep_s=float(sleep_s),
        scale=float(scale),
        inp=INPUT_NAME,
        out=OUTPUT_NAME,
    )
    (folder / "1" / "model.py").write_text(source)
    return folder
