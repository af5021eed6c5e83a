#!/usr/bin/env bash
# Set up everything on a fresh clone and run the whole check: install, CRD drift, lint, types,
# import layering, tests. This is the README's test command; .ci/run calls exactly it.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# The dependencies are requirements/*.txt (pyproject.toml reads them; the Dockerfiles install
# them): the builder extra pins the CPU build of torch (2.13.0, requirements/builder-cpu.txt).
.venv/bin/python -m pip install -q -e '.[dev]'
bash hack/install-helm.sh
bash hack/install-haproxy.sh
bash hack/install-prometheus.sh

echo "== CRD drift";   .venv/bin/modelops crd --check
echo "== ruff";        .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy";        .venv/bin/mypy --strict operator/modelops_operator builder/modelops_builder contract/modelops_contract cli/modelops_cli
echo "== layering";    .venv/bin/lint-imports
echo "== pytest";      .venv/bin/python -m pytest "$@"
