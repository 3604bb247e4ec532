#!/usr/bin/env bash
# Run our benchmark and the peer benchmarks (DBOS, Celery, LittleHorse, Temporal's dev
# server) REPEAT times (default 3), round-robin, one at a time, each bounded by a timeout,
# with `uptime` before and after each run. LittleHorse and Temporal are fetched/built into
# .cache/peers/ first (only when missing); a peer that cannot be set up is reported as
# `SKIPPED <name>: <reason>` and the others still run. PEERS (default
# "ours dbos celery littlehorse temporal") picks which run.
# Output: one file per run under $OUT (default .cache/bench-peers/<timestamp>/), and
# the figures on stdout. Usage: bench/peers/run_all.sh   (or: make bench-peers)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
REPEAT=${REPEAT:-3}
OUT=${OUT:-.cache/bench-peers/$(date +%Y%m%d-%H%M%S)}
PEERS=${PEERS:-ours dbos celery littlehorse temporal}
mkdir -p "$OUT"

want() { [[ " $PEERS " == *" $1 "* ]]; }

skip() {  # name, reason: say so, on stdout and in the output folder
    echo "SKIPPED $1: $2" | tee -a "$OUT/skipped.log"
}

setup() {  # name, setup script: 0 when the peer is ready, else SKIPPED with the reason
    local name=$1 script=$2 log="$OUT/setup-$1.log" rc=0
    timeout 1800 "$script" >"$log" 2>&1 || rc=$?
    [ "$rc" = 0 ] && return 0
    skip "$name" "setup failed (rc=$rc): $(grep -v '^\s*$' "$log" | tail -n 3 | tr '\n' ' ')"
    return 1
}

have_module() {  # python module name
    $PY -c "import $1" 2>/dev/null
}

if want littlehorse; then
    if ! have_module littlehorse; then
        skip littlehorse "python client missing (pip install -e '.[bench]')"; PEERS=${PEERS/littlehorse/}
    elif [ ! -x "${LH_JAVA:-/usr/lib/jvm/temurin-25-jdk-amd64/bin/java}" ]; then
        skip littlehorse "no Java 25 (set LH_JAVA)"; PEERS=${PEERS/littlehorse/}
    elif ! setup littlehorse bench/peers/setup_littlehorse.sh; then
        PEERS=${PEERS/littlehorse/}
    fi
fi
if want temporal; then
    if ! have_module temporalio; then
        skip temporal "python SDK missing (pip install -e '.[bench]')"; PEERS=${PEERS/temporal/}
    elif ! setup temporal bench/peers/setup_temporal.sh; then
        PEERS=${PEERS/temporal/}
    fi
fi

run() {  # name, then the command
    local name=$1; shift
    local file="$OUT/$name.txt"
    { echo "\$ $*"; echo "before: $(uptime)"; } >"$file"
    timeout 600 "$@" >>"$file" 2>"$OUT/$name.err" || echo "FAILED rc=$?" >>"$file"
    echo "after: $(uptime)" >>"$file"
    echo "== $name"; grep -E '^(throughput|latency|restore|before|after|FAILED)' "$file" || true
}

for i in $(seq 1 "$REPEAT"); do
    if want ours; then
        run "ours-max-$i" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step --task-queue-workers 1
        run "ours-rate250-$i" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step --task-queue-workers 1 --rate 250
        run "ours-rate50-$i" $PY bench/engine_bench.py --sagas 1000 --workflow bench.three_step --task-queue-workers 1 --rate 50
        run "ours-local-max-$i" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step_local
        run "ours-local-rate250-$i" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step_local --rate 250
        run "ours-local-rate50-$i" $PY bench/engine_bench.py --sagas 1000 --workflow bench.three_step_local --rate 50
    fi
    if want dbos; then
        run "dbos-max-$i" $PY bench/peers/dbos_bench.py --workflows 3000
        run "dbos-rate50-$i" $PY bench/peers/dbos_bench.py --workflows 1500 --rate 50
        run "dbos-rate40-$i" $PY bench/peers/dbos_bench.py --workflows 1200 --rate 40
    fi
    if want celery; then
        run "celery-max-$i" $PY bench/peers/celery_bench.py --chains 3000
        run "celery-rate100-$i" $PY bench/peers/celery_bench.py --chains 3000 --rate 100
    fi
    if want littlehorse; then
        run "littlehorse-max-$i" $PY bench/peers/littlehorse_bench.py --workflows 1000
        run "littlehorse-rate50-$i" $PY bench/peers/littlehorse_bench.py --workflows 750 --rate 50
        run "littlehorse-commit100-rate50-$i" $PY bench/peers/littlehorse_bench.py --workflows 750 --rate 50 --commit-interval-ms 100
        run "littlehorse-rate20-$i" $PY bench/peers/littlehorse_bench.py --workflows 600 --rate 20
    fi
    if want temporal; then
        run "temporal-max-$i" $PY bench/peers/temporal_bench.py --workflows 1000
        run "temporal-rate50-$i" $PY bench/peers/temporal_bench.py --workflows 750 --rate 50
        run "temporal-rate20-$i" $PY bench/peers/temporal_bench.py --workflows 600 --rate 20
        run "temporal-dbfile-rate20-$i" $PY bench/peers/temporal_bench.py --workflows 600 --rate 20 --db-file
    fi
done
echo "results in $OUT"
$PY bench/peers/summarize.py "$OUT"
