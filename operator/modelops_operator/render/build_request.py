"""The one mapping from a ModelDeployment's spec to the builder's BuildRequest (pure): the
build Job (`render/job.py`) and `modelops dev` both send what this writes."""

from __future__ import annotations

from modelops_contract.enums import EngineKind, ServingBackend
from modelops_contract.quantization import CalibrationRequest, DataSetSource, StagedSource
from modelops_contract.request import BuildRequest, TensorSig
from modelops_contract.shapes import ShapeRange
from modelops_contract.staging import staged_source_url

from ..api import ModelDeploymentSpec, TensorSpec
from ..api.source import Source
from ..settings import Settings
from .tokens import source_get_token

MODEL_NAME = "model"


def tensor_sigs(tensors: list[TensorSpec] | None) -> list[TensorSig] | None:
    """The spec's tensors as the builder's signature entries (None when the spec names none)."""
    if not tensors:
        return None
    return [TensorSig(name=t.name, data_type=t.data_type, dims=list(t.dims)) for t in tensors]


def store_location(settings: Settings) -> str:
    """Where the builder publishes: the s3:// prefix, or the store PVC's mount path."""
    return settings.store_uri or settings.store_mount_path


def store_backend(engine: EngineKind, settings: Settings) -> ServingBackend | None:
    """Backend of the store's ready-to-serve copy: python needs model.py beside the graph."""
    if engine == EngineKind.ONNXRUNTIME and settings.onnx_serving_backend == "python":
        return ServingBackend.PYTHON
    return None


def calibration_request(spec: ModelDeploymentSpec) -> CalibrationRequest | None:
    """spec.build.calibration as the builder's (int8 only; None: the builder's inputs, minmax)."""
    calibration = spec.build.calibration
    if calibration is None:
        return None
    data = calibration.source
    return CalibrationRequest(
        data=DataSetSource(source_uri=data.uri, sha256=data.sha256) if data else None,
        method=calibration.method,
        keep_float=list(calibration.keep_float or []),
    )


def labelled_set(spec: ModelDeploymentSpec) -> DataSetSource | None:
    """spec.validation's set when it is labelled and the build's gate uses it."""
    accuracy, validation = spec.build.accuracy, spec.validation
    if validation is None or validation.min_accuracy is None:
        return None
    judged = spec.build.precision == "int8" or (
        accuracy is not None
        and (accuracy.min_accuracy is not None or accuracy.max_accuracy_drop is not None)
    )
    if not judged:
        return None
    return DataSetSource(source_uri=validation.source.uri, sha256=validation.source.sha256)


def build_datasets(spec: ModelDeploymentSpec) -> list[Source]:
    """The files a build reads besides the model (calibration set, labelled set), once each:
    the source Job sends them to the engine server with the model."""
    found: dict[str, Source] = {}
    calibration = spec.build.calibration
    if spec.build.precision == "int8" and calibration is not None and calibration.source:
        found[calibration.source.sha256] = calibration.source
    if labelled_set(spec) is not None and spec.validation is not None:
        found.setdefault(spec.validation.source.sha256, spec.validation.source)
    return list(found.values())


def staged_data_set(
    settings: Settings, data: DataSetSource | None, owner: str
) -> DataSetSource | None:
    """A data set as the build Job of ModelDeployment `owner` reads it: from the engine server."""
    if data is None:
        return None
    staged = StagedSource(
        url=staged_source_url(settings.store_server, data.sha256, owner),
        token=source_get_token(settings, data.sha256, owner),
    )
    return data.model_copy(update={"staged_source": staged})


def build_request(
    spec: ModelDeploymentSpec,
    settings: Settings,
    *,
    engine_key: str | None,
    source_uri: str | None = None,
    store: str | None = None,
    model_name: str = MODEL_NAME,
    engine: EngineKind | None = None,
) -> BuildRequest:
    """The one mapping from a spec to a BuildRequest (the build Job's, and `modelops dev`'s).

    In a cluster the model name is fixed because store entries are shared by every
    ModelDeployment with the same key; the dev loop overrides source, store, name and engine.
    """
    accuracy = spec.build.accuracy
    engine = engine or spec.build.engine
    return BuildRequest(
        source_uri=source_uri or spec.model.source.uri,
        sha256=spec.model.source.sha256,
        format=spec.model.format,
        inputs=tensor_sigs(spec.model.inputs),
        outputs=tensor_sigs(spec.model.outputs),
        engine=engine,
        precision=spec.build.precision,
        max_batch_size=spec.build.max_batch_size,
        opt_batch_size=spec.build.opt_batch_size,
        shapes=[ShapeRange.model_validate(s.to_wire()) for s in spec.build.shapes]
        if spec.build.shapes
        else None,
        gpu_product=spec.build.gpu.product if spec.build.gpu else None,
        atol=accuracy.atol if accuracy else None,
        rtol=accuracy.rtol if accuracy else None,
        metric=accuracy.metric if accuracy else None,
        min_agreement=accuracy.min_agreement if accuracy else None,
        top_k=accuracy.top_k if accuracy else None,
        min_accuracy=accuracy.min_accuracy if accuracy else None,
        max_accuracy_drop=accuracy.max_accuracy_drop if accuracy else None,
        calibration=calibration_request(spec),
        labelled_set=labelled_set(spec),
        store=store or store_location(settings),
        store_name=None if store else settings.store_name,
        engine_key=engine_key,
        model_name=model_name,
        serving_backend=store_backend(engine, settings),
    )
