#!/usr/bin/env bash
# Installs everything into .venv (from the package registries) and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q -U pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip install -q -e ./core -e ./plugins/triton-backend-onnx -e ./plugins/triton-backend-python -e ./plugins/triton-backend-torch -e ./conformance -e ./docs/examples/triton-backend-numpyexpr
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
.venv/bin/triton conformance onnxruntime
.venv/bin/triton conformance numpyexpr
.venv/bin/triton conformance python
.venv/bin/triton conformance pytorch
