#!/usr/bin/env bash
# A long random fuzz round of the HTTP parser, the binary-tensor extension and the gRPC
# decoder (the suite runs the same tests with a fixed, small set of examples).
#   bash scripts/fuzz.sh [EXAMPLES]   (default 20000 per test; new random examples each run)
set -euo pipefail
cd "$(dirname "$0")/.."
TRITON_FUZZ_EXAMPLES="${1:-20000}" TRITON_FUZZ_RANDOM=1 \
    .venv/bin/python -m pytest core/tests/frontends/test_fuzz.py -p no:cacheprovider -x
