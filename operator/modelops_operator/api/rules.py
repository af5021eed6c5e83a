"""Cross-field rules: one message per rule, shared by CEL (API server) and pydantic (operator)."""

from __future__ import annotations

from pydantic.config import JsonDict

from .base import cel

MSG_INPUTS_REQUIRED = (
    "spec.model.inputs is required when spec.model.format is torchscript: list each input's "
    "name, dataType and dims (onnx and exported-program carry their own signature)"
)
MSG_INPUTS_UNIQUE = "spec.model.inputs names must be unique"
MSG_OUTPUTS_UNIQUE = "spec.model.outputs names must be unique"
MSG_CREDENTIALS = (
    "spec.model.source.credentialsSecret applies only to https:// and s3:// sources: "
    "remove it for pvc:// and file://"
)
MSG_HTTPS_URI = (
    "spec.model.source.uri must be https://HOST/PATH, e.g. https://models.example.com/m.onnx"
)
MSG_S3_URI = "spec.model.source.uri must be s3://BUCKET/KEY with a valid bucket name and a key"
MSG_PVC_URI = (
    "spec.model.source.uri must be pvc://CLAIM/PATH: CLAIM is a PersistentVolumeClaim name in "
    "this namespace, PATH the file inside it"
)
MSG_DIMS = (
    "spec.model.inputs[*].dims and spec.model.outputs[*].dims entries must be -1 (dynamic axis) "
    "or >= 1"
)
MSG_OPT_BATCH = "spec.build.optBatchSize must be <= spec.build.maxBatchSize"
MSG_FILE_URI = (
    "spec.model.source.uri must not be file:// in a cluster: file:// is for `modelops dev` on a "
    "laptop; a build Job fetches https://, s3:// or pvc://CLAIM/PATH"
)
MSG_SHAPE_MIN = (
    "spec.build.shapes[*].min must have one dim per max dim, each <= max (dims exclude the "
    "batch axis)"
)
MSG_SHAPE_OPT = (
    "spec.build.shapes[*].opt must have one dim per max dim, each between min (default 1) and max"
)
MSG_SHAPES_UNIQUE = "spec.build.shapes names must be unique: one range per input"
MSG_SHAPES_INPUTS = (
    "spec.build.shapes[*].name must name one of spec.model.inputs when the inputs are listed"
)
MSG_TENSORRT_GPU = (
    "spec.build.gpu.product is required when spec.build.engine is tensorrt: a TensorRT engine "
    "is built for one GPU model (e.g. NVIDIA-H100-80GB-HBM3)"
)
MSG_MIN_MAX = "spec.scaling.minReplicas must be <= spec.scaling.maxReplicas"
MSG_SCALE_TO_ZERO_MODE = (
    "spec.scaling.minReplicas 0 needs spec.rollout.traffic.mode Router: in GatewayAPI and "
    "Replicas modes nothing holds a request while the model wakes up; set minReplicas to 1 or "
    "use Router mode"
)
MSG_GPU_TARGET = (
    "spec.scaling.target is a percentage (1-100) when spec.scaling.metric is gpuUtilization"
)
MSG_GPU_METRIC = (
    "spec.scaling.metric gpuUtilization needs a GPU: set spec.build.gpu.product, or scale on "
    "queueTime or inferencesPerSecond"
)
MSG_STEPS_INCREASING = "spec.rollout.canary.steps must be strictly increasing, e.g. [10, 50, 100]"
MSG_STEPS_END = "spec.rollout.canary.steps must end at 100"
MSG_GATEWAY_REQUIRED = (
    "spec.rollout.traffic.gatewayAPI is required when spec.rollout.traffic.mode is GatewayAPI: "
    "name the Gateway(s) in gatewayAPI.parentRefs"
)
MSG_VALIDATION_GOAL = (
    "spec.validation needs exactly one of minAccuracy (a labelled set: inputs and labels) or "
    "minAgreement (inputs and expected outputs)"
)
MSG_TOP_K = "spec.build.accuracy.topK applies to metric topK only: set metric: topK or remove topK"
MSG_MIN_AGREEMENT = (
    "spec.build.accuracy.minAgreement does not apply to metric maxAbs (atol/rtol do): use metric "
    "agreement or topK, or remove minAgreement"
)
MSG_CALIBRATION_INT8 = (
    "spec.build.calibration applies to precision int8 only: set spec.build.precision: int8 or "
    "remove calibration"
)
MSG_ACCURACY_LABELS = (
    "spec.build.accuracy.minAccuracy and maxAccuracyDrop need a labelled set: give "
    "spec.validation with minAccuracy (an .npz of inputs and labels)"
)
MSG_CALIBRATION_CREDENTIALS = (
    "spec.build.calibration.source.credentialsSecret applies only to https:// and s3:// "
    "sources: remove it for pvc:// and file://"
)

HTTPS_URI_PATTERN = "^https://[^/]+/.+$"
S3_URI_PATTERN = "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$"
PVC_URI_PATTERN = "^pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+$"


# The URI schemes whose shape CEL checks beyond the schema pattern (no backslashes: CEL strings).
def scheme_rule(scheme: str, pattern: str, message: str) -> JsonDict:
    """A CEL rule: a URI of this scheme must match the pattern."""
    return cel(
        f"!self.uri.startsWith('{scheme}') || self.uri.matches('{pattern}')", message, ".uri"
    )


URI_SHAPES = (
    ("https://", HTTPS_URI_PATTERN, MSG_HTTPS_URI),
    ("s3://", S3_URI_PATTERN, MSG_S3_URI),
    ("pvc://", PVC_URI_PATTERN, MSG_PVC_URI),
)
