#!/usr/bin/env bash
# Issue 17's latency comparison in one sitting: our three-step saga (task-queue steps)
# at 50/s and 250/s, with a separate activity worker process (bench.three_step) and
# with the engine process serving the queue itself (bench.three_step_timed, tasks
# handed over in process), beside DBOS at 50/s and LittleHorse at 50/s and 20/s, REPEAT rounds
# (default 2), round-robin, one run at a time, `uptime` before each. Installs the peers'
# packages and sets LittleHorse up when they are missing; a peer that still cannot run
# is reported as SKIPPED and the others still run.
#
#   bench/peers/latency_sitting.sh            (REPEAT=3 bench/peers/latency_sitting.sh)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
REPEAT=${REPEAT:-2}
echo "command: bench/peers/latency_sitting.sh (REPEAT=$REPEAT) at $(git rev-parse --short HEAD)"
have() { $PY -c "import $1" 2>/dev/null; }
run() {  # label, command...
    local label=$1; shift
    echo "=== $label | $(uptime | sed 's/.*load/load/')"
    timeout 600 "$@" 2>&1 | grep -E "^(throughput|latency|cpu per)" || echo "(run failed)"
}
# a fresh machine: install the peers' packages and LittleHorse's jars first (both only
# when missing); what still fails is reported and skipped
if ! have dbos || ! have littlehorse; then
    .venv/bin/pip install -q -e '.[bench]' >/dev/null 2>&1 || echo "(pip install -e '.[bench]' failed)"
fi
lh=1; have littlehorse || { echo "SKIPPED littlehorse: python client missing"; lh=0; }
if [ $lh = 1 ] && ! bench/peers/setup_littlehorse.sh >/dev/null 2>/tmp/lh-setup.$$; then
    echo "SKIPPED littlehorse: bench/peers/setup_littlehorse.sh failed: $(tail -1 /tmp/lh-setup.$$)"; lh=0
fi
rm -f /tmp/lh-setup.$$
dbos=1; have dbos || { echo "SKIPPED dbos: package missing"; dbos=0; }
for i in $(seq "$REPEAT"); do
    run "ours 50/s ($i)" $PY bench/engine_bench.py --sagas 1000 --workflow bench.three_step --task-queue-workers 1 --rate 50
    run "ours co-located 50/s ($i)" $PY bench/engine_bench.py --sagas 1000 --workflow bench.three_step_timed --colocated --rate 50
    [ $dbos = 1 ] && run "dbos 50/s ($i)" $PY bench/peers/dbos_bench.py --workflows 1500 --rate 50
    [ $lh = 1 ] && run "littlehorse 50/s ($i)" $PY bench/peers/littlehorse_bench.py --workflows 750 --rate 50
    [ $lh = 1 ] && run "littlehorse 20/s ($i)" $PY bench/peers/littlehorse_bench.py --workflows 600 --rate 20
    run "ours 250/s ($i)" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step --task-queue-workers 1 --rate 250
    run "ours co-located 250/s ($i)" $PY bench/engine_bench.py --sagas 3000 --workflow bench.three_step_timed --colocated --rate 250
done
