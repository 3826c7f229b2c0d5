#!/usr/bin/env bash
# perf_analyzer with and without system shared memory on our server, for a small
# tensor (simple: 2 x 64 bytes) and a 16 MB one (identity_fp32: 1 x 4M FP32).
# Usage: bash bench/bench_shm.sh   (after bash bench/setup_tools.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PA=${PERF_ANALYZER:-bench/.tools/bin/perf_analyzer}
PORT=${PORT:-8300}
.venv/bin/tritonserver --model-repository examples/model_repository --allow-client-shm=true \
    --http-address 127.0.0.1 --http-port "$PORT" --grpc-address 127.0.0.1 --grpc-port $((PORT + 1)) \
    --allow-metrics=false > /tmp/bench_shm_server.log 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null; wait $SRV 2>/dev/null' EXIT
for _ in $(seq 100); do curl -sf "localhost:$PORT/v2/health/ready" >/dev/null && break; sleep 0.2; done
run() {  # model, protocol, shm, extra args
    local url="127.0.0.1:$PORT"; [ "$2" = grpc ] && url="127.0.0.1:$((PORT + 1))"
    local out
    out=$("$PA" -m "$1" -u "$url" -i "$2" --shared-memory "$3" --concurrency-range 1:1 \
          -p 3000 -s 20 "${@:4}" 2>&1 | grep -E '^Concurrency' || echo "failed")
    printf '%-14s %-5s shm=%-7s %s\n' "$1" "$2" "$3" "$out"
}
for proto in http grpc; do
    for shm in none system; do
        run simple "$proto" "$shm"
        run identity_fp32 "$proto" "$shm" --shape INPUT0:4194304 --output-shared-memory-size 16777216
    done
done
