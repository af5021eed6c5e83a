"""`modelops dev FILE`: build a ModelDeployment's engine locally and serve it with the real Triton.

The same steps as the cluster (key, build, accuracy gate, profile, config.pbtxt), on one laptop:
the engine goes to a local store, Triton (from the nvidia-pytriton wheel: CPU, python backend)
serves it on loopback, one inference proves it works, then it serves until Ctrl-C.

A `file://` source is resolved against the YAML file's folder when relative
(`file://models/tiny-mlp.onnx` in `examples/x.yaml` is `examples/models/tiny-mlp.onnx`) and taken
as is when absolute (`file:///abs/path`).

Exit codes: 0 ok (also Ctrl-C while serving), 2 bad input (the message names the field),
3 infrastructure (Triton, store, build machinery), 130 Ctrl-C before serving.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from modelops_builder.example_inputs import NUMPY_DTYPES
from modelops_builder.triton_cpu import MODEL_PY
from modelops_contract.enums import EngineKind
from modelops_contract.manifest import EngineManifest
from modelops_contract.request import BuildRequest, TensorSig
from modelops_contract.tritonconfig import ServingOptions, render_model_config
from modelops_operator.api import ModelDeploymentSpec, format_validation_error
from modelops_operator.api.spec import LOCAL_SOURCES
from modelops_operator.render.build_request import build_request
from modelops_operator.render.revision import serving_options
from modelops_operator.settings import Settings

from .dev_display import Progress, figures_table

EXIT_OK, EXIT_BAD_INPUT, EXIT_INFRA, EXIT_INTERRUPTED = 0, 2, 3, 130
FILE_SCHEME = "file://"


class DevError(Exception):
    """A failure with its exit code and a message for the user."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Deployment:
    """The parts of a ModelDeployment file the dev loop needs."""

    name: str
    spec: ModelDeploymentSpec
    base_dir: Path


def load_deployment(path: Path) -> Deployment:
    """Read and validate the first ModelDeployment in a YAML file (DevError code 2 if invalid)."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise DevError(EXIT_BAD_INPUT, f"cannot read {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise DevError(EXIT_BAD_INPUT, f"{path} is not valid YAML: {exc}") from exc
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ModelDeployment"]
    if not found:
        raise DevError(EXIT_BAD_INPUT, f"{path}: no document with kind: ModelDeployment")
    doc = found[0]
    name = str((doc.get("metadata") or {}).get("name") or path.stem)
    try:
        # The dev loop is where file:// sources belong: the cluster's validation refuses them.
        spec = ModelDeploymentSpec.model_validate(
            doc.get("spec") or {}, context={LOCAL_SOURCES: True}
        )
    except ValidationError as exc:
        raise DevError(EXIT_BAD_INPUT, f"{path}: {format_validation_error(exc)}") from exc
    return Deployment(name=name, spec=spec, base_dir=path.resolve().parent)


def resolve_source(uri: str, base_dir: Path) -> Path:
    """The local file of a file:// URI; relative paths are relative to the YAML's folder."""
    if not uri.startswith(FILE_SCHEME):
        raise DevError(
            EXIT_BAD_INPUT,
            f"spec.model.source.uri: `modelops dev` reads only file:// sources, got {uri!r}; "
            "download the model and point file://PATH at it",
        )
    rest = uri.removeprefix(FILE_SCHEME)
    path = Path(rest) if rest.startswith("/") else base_dir / rest
    if not path.is_file():
        raise DevError(EXIT_BAD_INPUT, f"spec.model.source.uri: {path} does not exist")
    return path.resolve()


def verify_sha256(path: Path, expected: str) -> None:
    """Fail with the field named when the file's sha256 differs from the spec's."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DevError(
            EXIT_BAD_INPUT,
            f"spec.model.source.sha256: {path.name} has sha256 {digest.hexdigest()}, "
            f"the spec says {expected}",
        )


# The dev loop serves with pytriton's CPU Triton: the python backend, no GPU resources.
DEV_SETTINGS = Settings(
    onnx_serving_backend="python",
    default_triton_resources={},
    store_pvc="dev",
    namespaces=[],
)


def to_build_request(deployment: Deployment, source: Path, store: Path) -> tuple[BuildRequest, str]:
    """The BuildRequest of a deployment (the operator's own mapping), and a note when the engine
    had to change."""
    spec, note = deployment.spec, ""
    engine = spec.build.engine
    if engine == EngineKind.TENSORRT:
        # Even with a GPU, the local Triton (pytriton's CPU build) has only the python backend,
        # so a TensorRT plan could not be served here: build the same graph with ONNX Runtime.
        engine = EngineKind.ONNXRUNTIME
        note = (
            "spec.build.engine is tensorrt, but this machine has no GPU/TensorRT serving path: "
            "building with onnxruntime instead (same ONNX graph, same accuracy gate)"
        )
    request = build_request(
        spec,
        DEV_SETTINGS,
        engine_key=None,
        source_uri=source.as_uri(),
        store=str(store.resolve()),
        model_name=deployment.name,
        engine=engine,
    )
    return request, note


def dev_serving_options(spec: ModelDeploymentSpec) -> ServingOptions:
    """config.pbtxt knobs from spec.serving (the operator's mapping), for the CPU Triton."""
    return serving_options(spec, DEV_SETTINGS)


def assemble_repository(
    manifest: EngineManifest, entry: Path, name: str, options: ServingOptions, dest: Path
) -> Path:
    """A Triton model repository under `dest` serving the store entry as `name`."""
    version = dest / name / "1"
    # A copy, not the store itself: the store entry stays immutable, and the package's current
    # model.py is used even for a cached engine built by an older builder.
    shutil.copytree(manifest.version_dir(entry), version, dirs_exist_ok=True)
    shutil.copy2(MODEL_PY, version / "model.py")
    (dest / name / "config.pbtxt").write_text(render_model_config(manifest, name, options))
    return dest


def random_inputs(inputs: list[TensorSig], batch: int = 1, seed: int = 0) -> dict[str, Any]:
    """Batch-1 random tensors for a signature (dynamic dims become 1, integers 0 or 1)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for sig in inputs:
        shape = (batch, *(d if d > 0 else 1 for d in sig.dims))
        dtype = NUMPY_DTYPES.get(sig.data_type)
        if dtype is None:
            raise DevError(
                EXIT_BAD_INPUT, f"input {sig.name}: data type {sig.data_type} unsupported"
            )
        if np.issubdtype(dtype, np.floating):
            feeds[sig.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype != np.bool_ and "mask" in sig.name.lower():
            # Every token attended: a masked-out row has no defined attention.
            feeds[sig.name] = np.ones(shape, dtype=dtype)
        else:
            # 0/1 stay valid for token ids, masks and booleans alike.
            feeds[sig.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def infer_once(http_url: str, name: str, manifest: EngineManifest) -> tuple[dict[str, Any], float]:
    """One binary-HTTP inference with random inputs: the outputs and the round trip in ms."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(http_url)
    try:
        inputs = []
        for sig_name, array in random_inputs(manifest.inputs).items():
            sig = next(s for s in manifest.inputs if s.name == sig_name)
            tensor = httpclient.InferInput(sig_name, list(array.shape), sig.data_type)
            tensor.set_data_from_numpy(array, binary_data=True)
            inputs.append(tensor)
        outputs = [
            httpclient.InferRequestedOutput(o.name, binary_data=True) for o in manifest.outputs
        ]
        start = time.perf_counter()
        result = client.infer(name, inputs, outputs=outputs)
        elapsed_ms = (time.perf_counter() - start) * 1000
        return {o.name: result.as_numpy(o.name) for o in manifest.outputs}, elapsed_ms
    finally:
        # Closing drops the keep-alive connection that would otherwise delay Triton's shutdown.
        client.close()


def _build(request: BuildRequest, console: Console) -> tuple[Any, float]:
    """pipeline.build with a rich progress display; BuildError -> DevError with its exit code."""
    from modelops_builder.errors import BuildError
    from modelops_builder.pipeline import build

    start = time.perf_counter()
    try:
        with Progress(console) as reporter:
            result = build(request, reporter=reporter, local_source=True)
    except BuildError as exc:
        code = EXIT_BAD_INPUT if exc.kind == "input" else EXIT_INFRA
        raise DevError(code, f"build failed: {exc}") from exc
    return result, time.perf_counter() - start


def _serve(
    deployment: Deployment, result: Any, build_seconds: float, once: bool, console: Console
) -> int:
    """Start Triton on the engine, prove it with one inference, serve until Ctrl-C or once."""
    from modelops_builder.triton_local import TritonUnavailableError, start_triton

    manifest: EngineManifest = result.manifest
    name = deployment.name
    workdir = Path(tempfile.mkdtemp(prefix="modelops-dev-"))
    try:
        options = dev_serving_options(deployment.spec)
        repo = assemble_repository(manifest, result.entry, name, options, workdir / "repository")
        with console.status("starting Triton (CPU, python backend)..."):
            try:
                server = start_triton(repo, workdir=workdir / "triton")
            except TritonUnavailableError as exc:
                raise DevError(EXIT_INFRA, f"Triton did not start: {exc}") from exc
        try:
            return _prove_and_wait(server, name, result, build_seconds, once, console)
        except KeyboardInterrupt:
            console.print("Ctrl-C: stopping Triton")
            return EXIT_OK
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _prove_and_wait(
    server: Any, name: str, result: Any, build_seconds: float, once: bool, console: Console
) -> int:
    """One inference, the figures and the endpoints; then wait for Ctrl-C unless `once`."""
    try:
        outputs, infer_ms = infer_once(server.http_url, name, result.manifest)
    except Exception as exc:  # any client or server failure is infrastructure here
        raise DevError(EXIT_INFRA, f"inference failed: {exc}\n{server.log()[-2000:]}") from exc
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
    console.print(f"[green]inference ok[/green]: {shapes}")
    console.print(figures_table(result, build_seconds, infer_ms))
    endpoints = Table(title=f"{name}: Triton endpoints", show_header=False)
    endpoints.add_row("HTTP", f"http://{server.http_url}/v2/models/{name}/infer")
    endpoints.add_row("gRPC", server.grpc_url)
    endpoints.add_row("metrics", server.metrics_url)
    console.print(endpoints)
    if once:
        return EXIT_OK
    console.print("serving until Ctrl-C")
    while server.process.poll() is None:
        time.sleep(0.5)
    raise DevError(EXIT_INFRA, f"Triton exited on its own ({server.process.returncode})")


def run_dev(path: Path, *, store: Path, once: bool, console: Console | None = None) -> int:
    """Build the file's engine locally, serve it with Triton, print endpoint and figures."""
    console = console or Console()
    try:
        deployment = load_deployment(path)
        source = resolve_source(deployment.spec.model.source.uri, deployment.base_dir)
        verify_sha256(source, deployment.spec.model.source.sha256)
        request, note = to_build_request(deployment, source, store)
        if note:
            console.print(f"[yellow]note[/yellow]: {note}")
        store.mkdir(parents=True, exist_ok=True)
        what = f"{request.engine} {request.precision}"
        console.print(f"building [bold]{deployment.name}[/bold] ({what}) into {store}")
        result, seconds = _build(request, console)
        return _serve(deployment, result, seconds, once, console)
    except DevError as exc:
        console.print(f"[red]error[/red]: {exc.message}", highlight=False)
        return exc.code
    except KeyboardInterrupt:
        console.print("interrupted")
        return EXIT_INTERRUPTED
