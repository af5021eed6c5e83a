#!/usr/bin/env bash
# TensorRT end to end on one GPU host with Docker and the NVIDIA Container Toolkit. It cannot
# run on the development machines (no GPU, no Docker engine). With the images present it takes
# a few minutes:
#   1. the chart's pair: the builder image's tensorrt.__version__ and the Triton image's
#      libnvinfer must both be the chart's tensorrt.version
#   2. two models made with torch in the builder image: a tiny MLP (16-32-4) and a 4x1024 MLP
#   3. each built in fp32, fp16 and int8 by `modelops-build --request` (the build Job's two steps
#      in one process: build, then seal and publish; int8 calibrated on the builder's inputs, its
#      QDQ graph built as a strongly typed network): the summary must say tensorrt, the chart's
#      TensorRT, gate passed (int8: agreement with fp32), latency profiled
#   4. one request again: a store hit (cached); the timing cache file written for this version
#   5. the chart's Triton image on the store's entries: every model answers like ONNX Runtime
#
# Environment: BUILDER_IMAGE (default ghcr.io/modelops/builder:<the chart's builder tag>, built
# from builder/Dockerfile when absent), TRITON_IMAGE (default the chart's), GPU (docker --gpus,
# default device=0), GRPC_PORT (Triton's gRPC on 127.0.0.1, default 18001), WORK (scratch
# folder, default a new temporary one), KEEP=1 keeps WORK and the Triton container.
set -euo pipefail
cd "$(dirname "$0")/.."

# One dotted key of the chart's values.yaml (two-space indentation, scalar values).
chart_value() {
  awk -v want="$1" '
    /^[[:space:]]*(#|-)/ || !/:/ { next }
    {
      match($0, /^ */); depth = RLENGTH / 2
      key = $1; sub(/:$/, "", key); path[depth] = key
      full = path[0]; for (i = 1; i <= depth; i++) full = full "." path[i]
      if (full == want) {
        value = $0; sub(/^[^:]*:[[:space:]]*/, "", value); gsub(/"/, "", value)
        print value; exit
      }
    }' charts/modelops/values.yaml
}

TRT_VERSION=$(chart_value tensorrt.version)
TRITON_IMAGE=${TRITON_IMAGE:-$(chart_value images.triton.repository):$(chart_value images.triton.tag)}
BUILDER_IMAGE=${BUILDER_IMAGE:-$(chart_value images.builder.repository):$(chart_value images.builder.tag)}
NGC_RELEASE=${TRITON_IMAGE##*:}
NGC_RELEASE=${NGC_RELEASE:0:5}
GPU=${GPU:-device=0}
GRPC_PORT=${GRPC_PORT:-18001}
WORK=${WORK:-$(mktemp -d /tmp/modelops-trt-e2e.XXXXXX)}
TRITON_NAME=modelops-trt-e2e-$$
MODELS=(tiny mlp4x1024)
PRECISIONS=(fp32 fp16 int8)

log() { printf '\n== %s\n' "$*"; }
fail() { echo "trt-e2e.sh: $*" >&2; exit 1; }
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then docker logs --tail 100 "$TRITON_NAME" 2>&1 || true; fi
  if [ "${KEEP:-0}" != 1 ]; then
    docker rm -f "$TRITON_NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
  else
    echo "kept $WORK and container $TRITON_NAME"
  fi
  exit "$rc"
}
trap cleanup EXIT

command -v docker >/dev/null || fail "needs docker (with the NVIDIA Container Toolkit)"
[ -n "$TRT_VERSION" ] || fail "no tensorrt.version in charts/modelops/values.yaml"
mkdir -p "$WORK/models" "$WORK/store"
# The builder image runs as the invoking user, so it can write WORK and we can delete it.
in_builder() {
  docker run --rm -u "$(id -u):$(id -g)" -e HOME=/tmp -v "$WORK:/work" "$@"
}

log "images: builder $BUILDER_IMAGE, Triton $TRITON_IMAGE, TensorRT $TRT_VERSION"
if ! docker image inspect "$BUILDER_IMAGE" >/dev/null 2>&1; then
  docker build -f builder/Dockerfile --build-arg "NGC_RELEASE=$NGC_RELEASE" \
    --build-arg "TENSORRT_VERSION=$TRT_VERSION" -t "$BUILDER_IMAGE" .
fi
docker pull -q "$TRITON_IMAGE" >/dev/null 2>&1 || docker image inspect "$TRITON_IMAGE" >/dev/null
builder_trt=$(in_builder --entrypoint python "$BUILDER_IMAGE" -c 'import tensorrt; print(tensorrt.__version__)')
[ "$builder_trt" = "$TRT_VERSION" ] || fail "builder has TensorRT $builder_trt, chart says $TRT_VERSION"
triton_lib=$(docker run --rm --entrypoint bash "$TRITON_IMAGE" -c \
  'find /usr/lib /usr/local /opt -name "libnvinfer.so.*.*.*" 2>/dev/null | head -n 1')
triton_trt=${triton_lib##*libnvinfer.so.}
[ "$triton_trt" = "${TRT_VERSION%.*}" ] || fail "Triton has libnvinfer $triton_trt ($triton_lib), chart says $TRT_VERSION"
echo "builder TensorRT $builder_trt, Triton libnvinfer $triton_trt"

log "models"
cat >"$WORK/make_models.py" <<'PY'
"""tiny: 16-32-4 MLP; mlp4x1024: four 1024-wide layers. Dynamic batch, seeded weights."""
import hashlib, io, sys, warnings
import torch
from torch import nn

torch.manual_seed(20240601)
layers = [nn.Linear(1024, 1024) if i else nn.Linear(64, 1024) for i in range(4)]
models = {
    "tiny": (nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), 16),
    "mlp4x1024": (nn.Sequential(*[m for l in layers for m in (l, nn.ReLU())], nn.Linear(1024, 10)), 64),
}
for name, (module, width) in models.items():
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.randn(2, width),), buffer, dynamo=False,
                          input_names=["x"], output_names=["y"], opset_version=17,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    data = buffer.getvalue()
    open(f"{sys.argv[1]}/{name}.onnx", "wb").write(data)
    print(name, hashlib.sha256(data).hexdigest())
PY
in_builder --entrypoint python "$BUILDER_IMAGE" /work/make_models.py /work/models >"$WORK/models.txt"
cat "$WORK/models.txt"

cat >"$WORK/check.py" <<'PY'
"""summary FILE [cached|built] VERSION | triton PORT NAME... : the checks of trt-e2e.sh."""
import json, sys, time
import numpy as np

def summary(path, want, version):
    s = json.loads(open(path).read().splitlines()[-1])
    assert s["ok"], s
    assert s["engine"] == "tensorrt" and s["tensorrtVersion"] == version, s
    assert s.get("cached", False) == (want == "cached"), s
    assert s["accuracy"]["passed"] or want == "cached", s
    assert s["latencyMs"]["p50"] > 0 and s["throughput"] > 0, s
    if s["precision"] == "int8" and want != "cached":
        assert s["accuracy"]["metric"] == "agreement" and s["quantization"]["quantizedNodes"] > 0, s
    print(f"{path}: {s['precision']} key {s['key'][:19]} max rel {s['accuracy']['maxRelError']:.2e}"
          f" p50 {s['latencyMs']['p50']:.3f} ms {s['throughput']:.0f}/s cached={want == 'cached'}")

def triton(port, names):
    import onnxruntime as ort
    import tritonclient.grpc as grpc
    client = grpc.InferenceServerClient(f"127.0.0.1:{port}")
    for _ in range(180):
        try:
            if client.is_server_ready():
                break
        except Exception:
            pass
        time.sleep(1)
    else:
        sys.exit("Triton never became ready")
    for name in names:
        model, precision = name.rsplit("_", 1)
        session = ort.InferenceSession(f"/work/models/{model}.onnx", providers=["CPUExecutionProvider"])
        width = session.get_inputs()[0].shape[1]
        x = np.random.default_rng(7).standard_normal((3, width)).astype(np.float32)
        want = session.run(["y"], {"x": x})[0]
        request = grpc.InferInput("x", list(x.shape), "FP32")
        request.set_data_from_numpy(x)
        got = client.infer(name, [request]).as_numpy("y")
        # fp32 1e-5/1e-4, fp16 1e-2, int8 the int8 gate's maxAbs defaults (0.1) and the argmax
        atol, rtol = {"fp32": (1e-5, 1e-4), "fp16": (1e-2, 1e-2), "int8": (1e-1, 1e-1)}[precision]
        np.testing.assert_allclose(got, want, atol=atol, rtol=rtol)
        if precision == "int8":
            assert (got.argmax(1) == want.argmax(1)).all(), (got, want)
        print(f"Triton {name}: max abs {np.abs(got - want).max():.2e} vs ONNX Runtime")

if sys.argv[1] == "summary":
    summary(*sys.argv[2:5])
else:
    triton(sys.argv[2], sys.argv[3:])
PY

build() {  # build MODEL PRECISION: one Job-mode build; the summary lands in WORK/MODEL_PRECISION.json
  local model=$1 precision=$2 sha
  sha=$(awk -v m="$model" '$1 == m { print $2 }' "$WORK/models.txt")
  local request
  # Job mode refuses plain paths and file:// (a cluster build reads only what is mounted or
  # fetched): the models folder is read as the claim `work` under MODELOPS_PVC_ROOT=/.
  request=$(printf '{"sourceUri":"pvc://work/models/%s.onnx","sha256":"%s","engine":"tensorrt",%s}' \
    "$model" "$sha" "\"precision\":\"$precision\",\"maxBatchSize\":16,\"optBatchSize\":8,\"store\":\"/work/store\",\"modelName\":\"${model}_$precision\",\"profileSeconds\":1")
  in_builder --gpus "$GPU" -e "MODELOPS_EXPECTED_TENSORRT_VERSION=$TRT_VERSION" -e MODELOPS_PVC_ROOT=/ \
    "$BUILDER_IMAGE" --request "$request" >"$WORK/${model}_$precision.json"
}

log "builds: ${MODELS[*]} x ${PRECISIONS[*]}"
for model in "${MODELS[@]}"; do
  for precision in "${PRECISIONS[@]}"; do
    build "$model" "$precision"
    in_builder --entrypoint python "$BUILDER_IMAGE" /work/check.py summary \
      "/work/${model}_$precision.json" built "$TRT_VERSION"
  done
done

log "the same request again: a store hit; the timing cache was written"
build tiny fp32
in_builder --entrypoint python "$BUILDER_IMAGE" /work/check.py summary /work/tiny_fp32.json cached "$TRT_VERSION"
caches=$(find "$WORK/store/_timing_cache" -name "*-trt$TRT_VERSION.cache" -size +0 | wc -l)
[ "$caches" -ge 1 ] || fail "no non-empty timing cache for TensorRT $TRT_VERSION in the store"

log "Triton $TRITON_IMAGE on the store"
repositories=() names=()
for model in "${MODELS[@]}"; do
  for precision in "${PRECISIONS[@]}"; do
    key=$(sed -n 's/.*"key":"sha256:\([0-9a-f]*\)".*/\1/p' "$WORK/${model}_$precision.json")
    repositories+=("--model-repository=/store/$key/repository")
    names+=("${model}_$precision")
  done
done
docker run -d --name "$TRITON_NAME" --gpus "$GPU" -p "127.0.0.1:$GRPC_PORT:8001" \
  -v "$WORK/store:/store:ro" "$TRITON_IMAGE" \
  tritonserver --model-control-mode=none --strict-readiness=true "${repositories[@]}" >/dev/null
in_builder --network host --entrypoint python "$BUILDER_IMAGE" /work/check.py triton \
  "$GRPC_PORT" "${names[@]}"

log "trt-e2e passed: TensorRT $TRT_VERSION builds, gates, caches and serves in $TRITON_IMAGE"
