#!/usr/bin/env bash
# Builds every distribution's sdist and wheel (the wheel from the sdist, as `python -m build`
# does), installs the wheels (not editable) into a fresh venv and serves the example repository
# from there: a file missing from an sdist or a wheel fails it. docs/install.md says more.
# Usage: bash scripts/wheel_smoke.sh   (PYTHON: the interpreter with `build`; default .venv's)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY=${PYTHON:-$ROOT/.venv/bin/python}
WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
# the venv under test must see its installed packages only, never the clone's sources
unset PYTHONPATH

DISTRIBUTIONS=(core plugins/triton-backend-onnx plugins/triton-backend-python plugins/triton-backend-torch
               plugins/triton-backend-coreml plugins/triton-backend-metal conformance
               docs/examples/triton-backend-numpyexpr)
for d in "${DISTRIBUTIONS[@]}"; do
    # build's output only when it fails
    "$PY" -m build --outdir "$WORK/dist" "$ROOT/$d" >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
done
ls "$WORK/dist"

# heavy dependencies (onnxruntime, numpy, grpcio) come from pip's cache, not the network
"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
"$V/python" -m pip install -q --find-links "$WORK/dist" "triton-core[onnx,python]" \
    "triton-backend-onnx[conformance]" triton-conformance "tritonclient[http,grpc]"

cd "$WORK"  # away from the clone: imports must resolve to the venv
"$V/python" - <<'PY'
import triton_core, triton_backend_onnx, triton_backend_python, triton_conformance
from triton_core.memory._native import _triton_native
for m in (triton_core, triton_backend_onnx, triton_backend_python, triton_conformance, _triton_native):
    assert "site-packages" in m.__file__, f"{m.__name__} imported from {m.__file__}, not the venv"
print("wheel smoke: imports from the venv; C layer:", _triton_native.__file__)
PY
"$V/triton" --version
"$V/tritonserver" --version >/dev/null
"$V/triton" backends | tee "$WORK/backends.txt"
for b in onnxruntime python; do
    grep -Eq "^$b +available" "$WORK/backends.txt" || { echo "wheel smoke: backend $b not available"; exit 1; }
done

read -r HTTP_PORT GRPC_PORT METRICS_PORT < <("$V/python" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
"$V/tritonserver" --model-repository "$ROOT/examples/model_repository" --http-address 127.0.0.1 \
    --grpc-address 127.0.0.1 --metrics-address 127.0.0.1 --http-port "$HTTP_PORT" \
    --grpc-port "$GRPC_PORT" --metrics-port "$METRICS_PORT" &
SERVER_PID=$!
"$V/python" "$ROOT/scripts/wheel_smoke_infer.py" "$HTTP_PORT" "$GRPC_PORT" "$SERVER_PID"
kill -INT "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=""

"$V/triton" conformance onnxruntime
echo "wheel smoke: OK"
