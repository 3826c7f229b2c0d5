#!/usr/bin/env bash
# The JSON load's own tools (idempotent): wrk from Debian's archive, MLServer 1.7 in its
# own venv bench/.tools/mlserver-venv (never the project's venv). The real Triton comes
# from bench/setup_tools.sh.
#
# MLServer 1.7.1 calls asyncio.get_event_loop() in its workers, which uvloop 0.22+ refuses
# ("There is no current event loop"): uvloop stays below 0.22 in that venv.
# PYTHON picks the interpreter (default python3); FORCE=1 redoes the venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$HERE/.tools/mlserver-venv"
PYTHON="${PYTHON:-python3}"

if ! command -v wrk >/dev/null; then
    apt-get install -y wrk
fi
if [[ "${FORCE:-0}" == 1 ]]; then
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/mlserver" ]]; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q "mlserver==1.7.1" "uvloop<0.22"
fi
"$VENV/bin/mlserver" --version
wrk --version 2>&1 | head -1 || true
