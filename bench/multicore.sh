#!/bin/bash
# Throughput and p99 on a many-core host: today's one process against --frontend-processes N.
#
#   REPO=<models: simple, add_py, mlp> PA=<perf_analyzer command> bash bench/multicore.sh [quick]
#
# The server runs under `taskset -c 0..K-1` (K cores), perf_analyzer under
# `taskset -c $CLIENT_CPUS` (default 8-15), so the two never share a core.
# Part 1: one process (today) on 8 cores: simple, add_py, mlp over HTTP and gRPC at
# concurrency 1, 4, 16, 64. Part 2: K cores with N processes (K,N = 1,1 2,1 2,2 4,4 8,8) at
# concurrency 64 (`mini`: K,N = 1,1 2,1 2,2 4,4 8,1 8,8 with simple over HTTP and add_py over
# gRPC at concurrency 64 only; `medium`: part 1 at concurrency 1, 16, 64 then `mini`; `quick`: a dry run on 2 cores). Prints one `RES` line per run and the processes' total RSS once ready.
set -u
: "${REPO:?the model repository}" "${PA:?the perf_analyzer command}"
HP=${HP:-28000}; GP=$((HP+1)); MP=$((HP+2))
CLIENT_CPUS=${CLIENT_CPUS:-8-15}
WIN=${WIN:-500}   # perf_analyzer's measurement window, ms
SCFG=""; SP=""
echo "== nproc $(nproc); $(python3 -V); $(grep -m1 'model name' /proc/cpuinfo)"

pa() { # model protocol concurrency
  local m=$1 pr=$2 c=$3 u=localhost:$HP; [ "$pr" = grpc ] && u=localhost:$GP
  local run="taskset -c $CLIENT_CPUS $PA -m $m -u $u -i $pr --concurrency-range $c:$c -p $WIN -s 100 --max-trials 10 -f /tmp/pa.csv"
  rm -f /tmp/pa.csv
  $run > /tmp/pa.log 2>&1 || { sleep 1; $run > /tmp/pa.log 2>&1; }
  python3 - "$m" "$pr" "$c" "$SCFG" <<'PY'
import csv, sys
m, pr, c, cfg = sys.argv[1:]
try:
    r = list(csv.DictReader(open("/tmp/pa.csv")))[0]
    print(f"RES {cfg:<5} {m:<7} {pr:<4} c{c:<3} {float(r['Inferences/Second']):>9.0f} infer/s"
          f"  p50 {int(r['p50 latency']):>7} us  p99 {int(r['p99 latency']):>7} us")
except Exception as e:
    print(f"RES {cfg:<5} {m:<7} {pr:<4} c{c:<3} FAILED {e}: "
          + open("/tmp/pa.log").read()[-300:].replace("\n", " | "))
PY
}

start() { # cores processes
  SCFG="k$1n$2"
  taskset -c 0-$(( $1 - 1 )) tritonserver --model-repository "$REPO" --frontend-processes "$2" \
    --http-port $HP --grpc-port $GP --metrics-port $MP --log-info false > /tmp/server-$SCFG.log 2>&1 &
  SP=$!
  local i n want=$(( $2 * 3 ))
  for i in $(seq 1 240); do  # every process ready: each new connection reaches one of them
    kill -0 $SP 2>/dev/null || { echo "== server $SCFG exited:"; tail -20 /tmp/server-$SCFG.log; exit 1; }
    n=$(for _ in $(seq 1 $want); do curl -s -m 1 -o /dev/null -w '%{http_code}\n' localhost:$HP/v2/health/ready; done | grep -c 200)
    [ "$n" -ge $want ] && break; sleep 0.5
  done
  python3 - $SP <<'PY'
import psutil, sys
p = psutil.Process(int(sys.argv[1])); ps = [p] + p.children(recursive=True)
print(f"== {len(ps)} processes, RSS total {sum(q.memory_info().rss for q in ps) / 2**20:.0f} MiB")
PY
  echo "== server $SCFG ready"
}
stop() { kill -TERM $SP; wait $SP 2>/dev/null; sleep 1; }

if [ "${1:-}" = mini ] || [ "${1:-}" = medium ]; then  # the scaling alone: about a minute
  if [ "$1" = medium ]; then  # and part 1 at concurrency 1, 16, 64 (mlp: HTTP 1 and 64)
    echo "== part 1 (medium): today (one process) on cores 0-7, perf_analyzer on $CLIENT_CPUS"
    start 8 1
    for m in simple add_py; do for pr in http grpc; do for c in 1 16 64; do pa $m $pr $c; done; done; done
    pa mlp http 1; pa mlp http 64
    stop
  fi
  echo "== part 2 (mini): K cores, N processes, concurrency 64"
  for kn in "1 1" "2 1" "2 2" "4 4" "8 1" "8 8"; do
    start $kn; pa simple http 64; pa add_py grpc 64; stop
  done
  exit 0
fi
if [ "${1:-}" = quick ]; then
  start 1 1; pa simple http 4; pa add_py grpc 4; stop
  start 1 2; pa simple http 4; stop
  exit 0
fi
echo "== part 1: today (one process) on cores 0-7, perf_analyzer on $CLIENT_CPUS"
start 8 1
for m in simple add_py mlp; do for pr in http grpc; do for c in 1 4 16 64; do pa $m $pr $c; done; done; done
stop
echo "== part 2: K cores (0..K-1), N processes, concurrency 64"
for kn in "1 1" "2 1" "2 2" "4 4" "8 8"; do
  start $kn
  for m in simple add_py; do for pr in http grpc; do pa $m $pr 64; done; done
  [ "$kn" = "8 8" ] && pa mlp http 64
  stop
done
