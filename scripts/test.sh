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
.venv/bin/python -m pip install -q -e './core[s3]' -e ./plugins/triton-backend-onnx -e ./plugins/triton-backend-coreml -e ./plugins/triton-backend-python -e ./plugins/triton-backend-torch -e ./conformance -e ./docs/examples/triton-backend-numpyexpr
# the metal plugin: its mlx backend runs on MLX's CPU build off macOS
if [ "$(uname)" = Darwin ]; then
    .venv/bin/python -m pip install -q -e ./plugins/triton-backend-metal
else
    .venv/bin/python -m pip install -q -e './plugins/triton-backend-metal[cpu]'
fi
.venv/bin/ruff check .
# the manual: --strict fails on a broken link or a page outside the nav; the site is not kept
SITE_DIR="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$SITE_DIR"
rm -rf "$SITE_DIR"
.venv/bin/python -m pytest "$@"
.venv/bin/triton conformance onnxruntime
.venv/bin/triton conformance numpyexpr
.venv/bin/triton conformance python
.venv/bin/triton conformance mlx
.venv/bin/triton conformance pytorch
# Metal and Core ML run only on macOS (elsewhere the suites would skip every test with that reason)
if [ "$(uname -s)" = Darwin ]; then
    .venv/bin/triton conformance metal
    .venv/bin/triton conformance coreml
fi
# the distributions as users get them: sdists and wheels, installed into a fresh venv
PYTHON="$PWD/.venv/bin/python" bash scripts/wheel_smoke.sh
