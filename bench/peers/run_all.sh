#!/usr/bin/env bash
# Run our benchmark and both peer benchmarks REPEAT times (default 3), round-robin,
# one at a time, each bounded by a timeout, with `uptime` before and after each run.
# Output: one file per run under $OUT (default .cache/bench-peers/<timestamp>/), and
# the figures on stdout. Usage: bench/peers/run_all.sh   (or: make bench-peers)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
REPEAT=${REPEAT:-3}
OUT=${OUT:-.cache/bench-peers/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

run() {  # name, then the command
    local name=$1; shift
    local file="$OUT/$name.txt"
    { echo "\$ $*"; echo "before: $(uptime)"; } >"$file"
    timeout 600 "$@" >>"$file" 2>"$OUT/$name.err" || echo "FAILED rc=$?" >>"$file"
    echo "after: $(uptime)" >>"$file"
    echo "== $name"; grep -E '^(throughput|latency|restore|before|after|FAILED)' "$file" || true
}

for i in $(seq 1 "$REPEAT"); do
    run "ours-max-$i" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step --task-queue-workers 1
    run "ours-rate250-$i" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step --task-queue-workers 1 --rate 250
    run "ours-rate50-$i" $PY bench/engine_bench.py --sagas 1000 --workflow bench.three_step --task-queue-workers 1 --rate 50
    run "ours-local-max-$i" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step_local
    run "ours-local-rate250-$i" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step_local --rate 250
    run "ours-local-rate50-$i" $PY bench/engine_bench.py --sagas 1000 --workflow bench.three_step_local --rate 50
    run "dbos-max-$i" $PY bench/peers/dbos_bench.py --workflows 3000
    run "dbos-rate50-$i" $PY bench/peers/dbos_bench.py --workflows 1500 --rate 50
    run "dbos-rate40-$i" $PY bench/peers/dbos_bench.py --workflows 1200 --rate 40
    run "celery-max-$i" $PY bench/peers/celery_bench.py --chains 3000
    run "celery-rate100-$i" $PY bench/peers/celery_bench.py --chains 3000 --rate 100
done
echo "results in $OUT"
$PY bench/peers/summarize.py "$OUT"
