#!/usr/bin/env bash
# The three-step saga on this checkout and on an earlier git ref, run alternately in one
# sitting on one warm broker: max rate (3,000 sagas) and 50 starts/s (1,000 sagas).
# The machine is noisy, so compare medians of the runs, not single figures.
#
#   bench/compare_builds.sh d52b3cd 3
#
# Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts one local broker for all runs.
set -euo pipefail
ref=${1:?usage: bench/compare_builds.sh GIT_REF [RUNS]}
runs=${2:-3}
# shellcheck source=bench/sitting.sh
source "$(dirname "$0")/sitting.sh"
echo "command: bench/compare_builds.sh $ref $runs (new = $(git -C "$root" rev-parse --short HEAD), old = $ref)"
for i in $(seq "$runs"); do
  for build in old new; do
    dir=$root
    [ "$build" = old ] && dir=$old
    for mode in max rate50; do
      args=(--sagas 3000 --workflow bench.three_step --task-queue-workers 1)
      [ "$mode" = rate50 ] && args=(--sagas 1000 --workflow bench.three_step --task-queue-workers 1 --rate 50)
      echo "=== run $i $build $mode | $(uptime | sed 's/.*load/load/')"
      PYTHONPATH="$dir" "$py" "$dir/bench/engine_bench.py" "${args[@]}" 2>&1 \
        | grep -E "^(throughput|latency|cpu per)" || echo "(run failed)"
    done
  done
done
