"""Finding 7: Triton's admin APIs answer only the operator's key, and the router drops it.

The real tritonserver (nvidia-pytriton) runs with the arguments render/revision.py gives every
revision's pods; the real HAProxy runs the router's haproxy.cfg in front of it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from modelops_builder.triton_local import TritonProcess, start_triton
from modelops_operator.render.revision import (
    ADMIN_HEADER,
    GRPC_ADMIN_HEADER,
    RESTRICTED_APIS,
    restricted_api_args,
)
from tests.support.router_harness import router, services
from tests.support.triton_models import INPUT_NAME, WIDTH, write_model

MODEL = "m"
KEY = "k" * 64  # what render/tokens.py's triton_admin_key gives: 64 hex-like characters
ADMIN = {ADMIN_HEADER: KEY}
GRPC_ADMIN = {GRPC_ADMIN_HEADER: KEY}  # gRPC metadata: Triton prefixes the key's name
# One HTTP call per restricted API group (Triton's HTTP protocol extensions).
ADMIN_CALLS = {
    "model-repository": ("POST", "/v2/repository/index"),
    "shared-memory": ("GET", "/v2/systemsharedmemory/status"),
    "trace": ("GET", "/v2/trace/setting"),
    "logging": ("GET", "/v2/logging"),
}


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A tritonserver with the revision's restriction (a failure to start fails the tests)."""
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, MODEL)
    server = start_triton(repo, extra_args=restricted_api_args(KEY))
    try:
        yield server
    finally:
        server.stop()


def _request(
    method: str, url: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _call(base: str, api: str, headers: dict[str, str] | None = None) -> int:
    method, path = ADMIN_CALLS[api]
    return _request(method, f"http://{base}{path}", headers)[0]


def _get(base: str, path: str) -> int:
    return _request("GET", f"http://{base}{path}")[0]


def _infer_http(base: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    body = {
        "inputs": [
            {"name": INPUT_NAME, "shape": [1, WIDTH], "datatype": "FP32", "data": [1.0] * WIDTH}
        ]
    }
    return _request("POST", f"http://{base}/v2/models/{MODEL}/infer", headers, body)


def test_finding_7_every_restricted_group_is_listed() -> None:
    assert set(ADMIN_CALLS) == set(RESTRICTED_APIS)
    assert restricted_api_args("") == []


@pytest.mark.parametrize("api", sorted(ADMIN_CALLS))
def test_finding_7_admin_http_apis_need_the_key(triton: TritonProcess, api: str) -> None:
    assert _call(triton.http_url, api) >= 400
    assert _call(triton.http_url, api, {ADMIN_HEADER: "wrong"}) >= 400
    assert _call(triton.http_url, api, ADMIN) == 200


def test_finding_7_inference_and_health_need_no_key(triton: TritonProcess) -> None:
    status, answer = _infer_http(triton.http_url)
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == [2.0] * WIDTH
    for path in ("/v2/health/ready", f"/v2/models/{MODEL}/config", f"/v2/models/{MODEL}/stats"):
        assert _get(triton.http_url, path) == 200, path


def test_finding_7_admin_grpc_apis_need_the_key(triton: TritonProcess) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        with pytest.raises(InferenceServerException):
            client.get_model_repository_index()
        with pytest.raises(InferenceServerException):
            client.get_system_shared_memory_status()
        with pytest.raises(InferenceServerException):
            client.get_log_settings()
        with pytest.raises(InferenceServerException):
            client.get_log_settings(headers={GRPC_ADMIN_HEADER: "wrong"})
        assert client.get_model_repository_index(headers=GRPC_ADMIN) is not None
        assert client.get_log_settings(headers=GRPC_ADMIN) is not None
        data = np.ones((1, WIDTH), dtype=np.float32)
        tensor = grpcclient.InferInput(INPUT_NAME, [1, WIDTH], "FP32")
        tensor.set_data_from_numpy(data)
        result = client.infer(MODEL, [tensor])
        assert result.as_numpy("y").tolist() == (data * 2).tolist()
    finally:
        client.close()


async def test_finding_7_the_router_drops_a_client_supplied_key(
    triton: TritonProcess, tmp_path: Path
) -> None:
    with services(tmp_path, {"m-r1": {"pod-a": triton}}) as proxies:
        async with router(proxies) as front:
            await front.route({"m-r1": 100})
            # The key is right (Triton itself takes it), yet never arrives through the router.
            assert _call(triton.http_url, "model-repository", ADMIN) == 200
            for api in ADMIN_CALLS:
                assert _call(front.http_url, api, ADMIN) >= 400, api
            assert _infer_http(front.http_url, ADMIN)[0] == 200
            client = grpcclient.InferenceServerClient(front.grpc_url)
            try:
                direct = grpcclient.InferenceServerClient(triton.grpc_url)
                assert direct.get_log_settings(headers=GRPC_ADMIN) is not None
                direct.close()
                with pytest.raises(InferenceServerException):
                    client.get_model_repository_index(headers=GRPC_ADMIN)
                with pytest.raises(InferenceServerException):
                    client.get_log_settings(headers=GRPC_ADMIN)
                assert client.is_model_ready(MODEL, headers=GRPC_ADMIN)
            finally:
                client.close()
