"""Write Triton's config.pbtxt through tritonclient's `model_config_pb2`.

Shared by the builder (the ready-to-serve repository in the store) and the operator (the
ConfigMap of each revision, from engine.json + spec.serving), so both write the same config.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .enums import ServingBackend
from .manifest import EngineManifest
from .request import TensorSig

# Backend per serving kind: TensorRT plans and ONNX graphs use Triton's own backends in the NGC
# image; the CPU development image (pytriton's Triton) has only the python backend, whose model.py
# runs the same ONNX graph with onnxruntime.
_PLATFORM = {"tensorrt_plan": "tensorrt_plan"}
_BACKEND = {"onnxruntime": "onnxruntime", "python": "python"}


@dataclass(frozen=True)
class ServingOptions:
    """The serving knobs that change config.pbtxt but never the engine."""

    max_queue_delay_microseconds: int | None = 100
    instances: int = 1
    gpu: bool = True
    backend: ServingBackend | None = None


def _tensor(target: mc.ModelInput | mc.ModelOutput, sig: TensorSig) -> None:
    target.name = sig.name
    target.data_type = mc.DataType.Value(f"TYPE_{sig.data_type}")
    target.dims.extend(sig.dims)


def build_model_config(
    manifest: EngineManifest, name: str, options: ServingOptions
) -> mc.ModelConfig:
    """The ModelConfig protobuf for a manifest served under `name`."""
    config = mc.ModelConfig(name=name, max_batch_size=manifest.max_batch_size)
    backend = options.backend or manifest.serving_backend
    if backend == "tensorrt_plan" and manifest.engine != "tensorrt":
        raise ValueError(f"engine {manifest.engine} cannot be served by the tensorrt_plan backend")
    if backend in _PLATFORM:
        config.platform = _PLATFORM[backend]
    else:
        config.backend = _BACKEND[backend]
    if backend == "onnxruntime":
        config.default_model_filename = manifest.model_file
    for sig in manifest.inputs:
        _tensor(config.input.add(), sig)
    for sig in manifest.outputs:
        _tensor(config.output.add(), sig)
    group = config.instance_group.add()
    group.count = options.instances
    use_gpu = options.gpu and backend != "python"
    group.kind = mc.ModelInstanceGroup.KIND_GPU if use_gpu else mc.ModelInstanceGroup.KIND_CPU
    if options.max_queue_delay_microseconds is not None:
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_microseconds
        opt = manifest.opt_batch_size
        if 1 < opt <= manifest.max_batch_size:
            config.dynamic_batching.preferred_batch_size.append(opt)
    if backend == "python":
        param = config.parameters["model_file"]
        param.string_value = manifest.model_file
    return config


def render_model_config(manifest: EngineManifest, name: str, options: ServingOptions) -> str:
    """config.pbtxt text for a manifest served under `name` with the given serving options."""
    return str(text_format.MessageToString(build_model_config(manifest, name, options)))
