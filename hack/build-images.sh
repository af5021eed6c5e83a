#!/usr/bin/env bash
# Build the project's two images, push them to a registry you control, and print the chart's
# --set flags that point a release at them (docs/install.md, "Images").
#
#   hack/build-images.sh REGISTRY [TAG]     e.g. hack/build-images.sh registry.example.com/ml
#   hack/build-images.sh --plan REGISTRY [TAG]   print what would be built, build nothing
#
# REGISTRY/operator:TAG        from operator/Dockerfile
# REGISTRY/builder:TAG-ngcYY.MM from builder/Dockerfile, FROM nvcr.io/nvidia/tensorrt:YY.MM-py3,
#                              YY.MM being the NGC release of the chart's Triton image and
#                              TENSORRT_VERSION the chart's tensorrt.version (one TensorRT for
#                              building and serving; the build stops on another).
# TAG defaults to the chart's appVersion (what the chart runs when images.operator.tag is empty).
# PUSH=0 builds without pushing. Needs docker (with buildx for another platform: PLATFORM=...);
# the builder's base is large (about 10 GB) and comes from nvcr.io.
# .github/workflows/release.yaml builds the same images with the same arguments (a test checks).
set -euo pipefail
cd "$(dirname "$0")/.."

plan_only=0
if [ "${1:-}" = "--plan" ]; then
  plan_only=1
  shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ] || [ -z "$1" ]; then
  echo "usage: hack/build-images.sh [--plan] REGISTRY [TAG]   (e.g. registry.example.com/ml)" >&2
  exit 2
fi
registry=${1%/}
chart=charts/modelops
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")
tag=${2:-$app_version}
# The chart's Triton tag (images.triton.tag, "YY.MM-py3") and tensorrt.version.
triton_tag=$(sed -n '/^  triton:/,/^  [a-z]/s/^    tag: *"\([^"]*\)"$/\1/p' "$chart/values.yaml")
ngc_release=${triton_tag%%-*}
tensorrt_version=$(sed -n '/^tensorrt:/,/^[a-z]/s/^  version: *"\([^"]*\)"$/\1/p' "$chart/values.yaml")
if [ -z "$app_version" ] || [ -z "$ngc_release" ] || [ -z "$tensorrt_version" ]; then
  echo "cannot read appVersion, images.triton.tag or tensorrt.version from $chart" >&2
  exit 1
fi

operator_ref="$registry/operator:$tag"
builder_ref="$registry/builder:$tag-ngc$ngc_release"
# One line per image: name, Dockerfile, reference, build args (what the release workflow uses).
plan() {
  printf 'operator\toperator/Dockerfile\t%s\t\n' "$operator_ref"
  printf 'builder\tbuilder/Dockerfile\t%s\tNGC_RELEASE=%s TENSORRT_VERSION=%s\n' \
    "$builder_ref" "$ngc_release" "$tensorrt_version"
}
if [ "$plan_only" = 1 ]; then
  plan
  exit 0
fi

command -v docker >/dev/null || { echo "hack/build-images.sh needs docker" >&2; exit 1; }
platform=()
if [ -n "${PLATFORM:-}" ]; then platform=(--platform "$PLATFORM"); fi
while IFS=$'\t' read -r name dockerfile ref args; do
  build_args=()
  for arg in $args; do build_args+=(--build-arg "$arg"); done
  echo "== $name: $ref"
  docker build "${platform[@]}" -f "$dockerfile" "${build_args[@]}" -t "$ref" .
  if [ "${PUSH:-1}" != 0 ]; then docker push "$ref"; fi
done < <(plan)

# The digest pins what was pushed (a tag can move; the chart's images.*.digest cannot).
digest() {
  if [ "${PUSH:-1}" = 0 ]; then return; fi
  local repo_digest
  repo_digest=$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$1" |
    grep -m1 "^${1%:*}@" || true)
  if [ -n "$repo_digest" ]; then printf ' --set images.%s.digest=%s' "$2" "${repo_digest#*@}"; fi
}
echo
echo "Point the chart at these images (helm install/upgrade ... charts/modelops):"
printf '  --set images.operator.repository=%s --set images.operator.tag=%s%s \\\n' \
  "$registry/operator" "$tag" "$(digest "$operator_ref" operator)"
printf '  --set images.builder.repository=%s --set images.builder.tag=%s%s\n' \
  "$registry/builder" "$tag-ngc$ngc_release" "$(digest "$builder_ref" builder)"
