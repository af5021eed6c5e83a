#!/usr/bin/env bash
# End-to-end on kind (needs Docker, kind and kubectl; cannot run on a machine without Docker).
#
#   1. create the cluster from kind-config.yaml; build the operator and builder images and load them
#   2. install the chart into a namespace that enforces Pod Security "restricted"
#   3. put examples/models/tiny-mlp.onnx on a PVC, apply examples/cpu-onnxruntime.yaml with a
#      pvc:// source, and `kubectl wait --for=condition=Ready`
#   4. break it twice and check that the good revision keeps serving:
#      a. a build that fails the accuracy gate (fp16 with zero tolerance): nothing rolls out;
#      b. a canary that crash-loops (a memory limit Triton cannot start in): rolled back.
#
# Environment: CLUSTER (default modelops), KEEP_CLUSTER=1 to keep it, TRITON_IMAGE (default the
# chart's NGC image; large), BUILDER_IMAGE (skip building builder/Dockerfile), TIMEOUT (15m).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-modelops}
NS=modelops-e2e
MD=tiny-mlp
TIMEOUT=${TIMEOUT:-15m}
TAG=e2e
OPERATOR_IMAGE=ghcr.io/modelops/operator:$TAG
BUILDER_IMAGE=${BUILDER_IMAGE:-}
HELM=.tools/bin/helm

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind.sh needs $tool" >&2; exit 1; }
done
bash hack/install-helm.sh

log() { printf '\n== %s\n' "$*"; }
md_field() { kubectl -n "$NS" get md "$MD" -o "jsonpath=$1"; }
dump() {
  kubectl -n "$NS" get md,deploy,job,pod -o wide || true
  kubectl -n "$NS" get md "$MD" -o yaml || true
  kubectl -n "$NS" logs deploy/modelops --tail=200 || true
}
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then dump; fi
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER"; fi
  exit "$rc"
}

log "cluster"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config kind-config.yaml --wait 120s
fi
trap cleanup EXIT
kubectl config use-context "kind-$CLUSTER"

log "images"
docker build -f operator/Dockerfile -t "$OPERATOR_IMAGE" .
if [ -z "$BUILDER_IMAGE" ]; then
  # The chart requires the builder tag to end in -ngc<YY.MM> of the Triton image's release.
  triton_tag=${TRITON_IMAGE:+${TRITON_IMAGE##*:}}
  triton_tag=${triton_tag:-$(sed -n 's/^    tag: "\([0-9][0-9]\.[0-9][0-9]\)-py3"$/\1/p' charts/modelops/values.yaml)}
  ngc_release=${triton_tag:0:5}
  BUILDER_IMAGE=ghcr.io/modelops/builder:$TAG-ngc$ngc_release
  docker build -f builder/Dockerfile --build-arg "NGC_RELEASE=$ngc_release" -t "$BUILDER_IMAGE" .
fi
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$BUILDER_IMAGE"

log "chart"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl label --overwrite namespace "$NS" pod-security.kubernetes.io/enforce=restricted
helm_args=(
  --namespace "$NS" --wait --timeout 5m
  --set fullnameOverride=modelops
  --set "images.operator.tag=$TAG" --set images.pullPolicy=Never
  --set "images.builder.repository=${BUILDER_IMAGE%:*}" --set "images.builder.tag=${BUILDER_IMAGE##*:}"
  --set 'store.pvc.accessModes={ReadWriteOnce}' --set store.pvc.size=2Gi
  --set operator.logFormat=plain --set operator.reconcileIntervalSeconds=5
)
if [ -n "${TRITON_IMAGE:-}" ]; then
  helm_args+=(--set "images.triton.repository=${TRITON_IMAGE%:*}" --set "images.triton.tag=${TRITON_IMAGE##*:}")
fi
"$HELM" upgrade --install modelops charts/modelops "${helm_args[@]}"
.venv/bin/modelops doctor --namespace "$NS" --release modelops

log "model on a PVC"
kubectl -n "$NS" apply -f - <<'EOF'
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: models}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 64Mi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: models-upload}
spec:
  securityContext: {runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: upload
      image: busybox:1.36
      command: [sleep, "600"]
      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      volumeMounts: [{name: models, mountPath: /models}]
  volumes: [{name: models, persistentVolumeClaim: {claimName: models}}]
EOF
kubectl -n "$NS" wait --for=condition=Ready pod/models-upload --timeout=3m
kubectl -n "$NS" exec -i models-upload -- sh -c 'cat > /models/tiny-mlp.onnx' <examples/models/tiny-mlp.onnx
kubectl -n "$NS" delete pod models-upload --wait=true

log "deploy $MD"
sed 's#uri: file://models/tiny-mlp.onnx#uri: pvc://models/tiny-mlp.onnx#' examples/cpu-onnxruntime.yaml \
  | kubectl -n "$NS" apply -f -
kubectl -n "$NS" wait --for=condition=Ready "md/$MD" --timeout="$TIMEOUT"
good=$(md_field '{.status.revision.current}')
echo "serving revision $good"
kubectl get --raw "/api/v1/namespaces/$NS/services/$MD:8000/proxy/v2/health/ready" >/dev/null

expect_good_revision_serving() {
  [ "$(md_field '{.status.revision.current}')" = "$good" ] || { echo "current revision changed" >&2; return 1; }
  kubectl -n "$NS" rollout status "deploy/$MD-r$good" --timeout=2m
  kubectl get --raw "/api/v1/namespaces/$NS/services/$MD:8000/proxy/v2/health/ready" >/dev/null
}

log "break 1: the engine fails the accuracy gate"
kubectl -n "$NS" patch md "$MD" --type merge \
  -p '{"spec":{"build":{"precision":"fp16","accuracy":{"atol":0,"rtol":0}}}}'
builds=(-l app.kubernetes.io/component=build)  # build Jobs run in the release namespace
for _ in $(seq 60); do  # the new key's build Job (the first one completed)
  [ "$(kubectl -n "$NS" get job "${builds[@]}" -o name | wc -l)" -ge 2 ] && break
  sleep 5
done
job=$(kubectl -n "$NS" get job "${builds[@]}" --sort-by=.metadata.creationTimestamp -o name | tail -n 1)
kubectl -n "$NS" wait "$job" --for=condition=Failed --timeout="$TIMEOUT"
kubectl -n "$NS" wait "md/$MD" --timeout=2m \
  --for=jsonpath='{.status.conditions[?(@.type=="EngineBuilt")].status}'=False
expect_good_revision_serving

log "restore the spec: Ready again without a rebuild"
sed 's#uri: file://models/tiny-mlp.onnx#uri: pvc://models/tiny-mlp.onnx#' examples/cpu-onnxruntime.yaml \
  | kubectl -n "$NS" apply -f -
kubectl -n "$NS" patch md "$MD" --type json -p '[{"op":"remove","path":"/spec/build/accuracy"}]'
kubectl -n "$NS" wait --for=condition=Ready "md/$MD" --timeout="$TIMEOUT"
expect_good_revision_serving

log "break 2: a canary that crash-loops is rolled back"
kubectl -n "$NS" patch md "$MD" --type merge -p '{"spec":{
  "serving":{"resources":{"requests":{"memory":"16Mi"},"limits":{"memory":"16Mi"}}},
  "rollout":{"strategy":"Canary","progressDeadlineSeconds":120}}}'
kubectl -n "$NS" wait "md/$MD" --timeout="$TIMEOUT" --for=jsonpath='{.status.phase}'=RolledBack
kubectl -n "$NS" wait "md/$MD" --timeout=1m --for=condition=Degraded
expect_good_revision_serving
for deploy in $(kubectl -n "$NS" get deploy -l "modelops.dev/deployment=$MD" -o name); do
  if [ "$deploy" != "deployment.apps/$MD-r$good" ]; then
    [ "$(kubectl -n "$NS" get "$deploy" -o 'jsonpath={.spec.replicas}')" = 0 ]
  fi
done

log "e2e passed"
