#!/usr/bin/env bash
# Early task dispatch on and off (this checkout) next to an earlier git ref, run in
# turn in one sitting on one warm broker: max rate (3,000 sagas), 50/s and 250/s
# (1,000 sagas each), three-step sagas with task-queue steps. Medians are the figure.
#
#   bench/early_dispatch_sitting.sh d52b3cd 3
#
# Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts one local broker for all runs.
set -euo pipefail
ref=${1:?usage: bench/early_dispatch_sitting.sh GIT_REF [RUNS]}
runs=${2:-3}
# shellcheck source=bench/sitting.sh
source "$(dirname "$0")/sitting.sh"
echo "command: bench/early_dispatch_sitting.sh $ref $runs (new = $(git -C "$root" rev-parse --short HEAD), old = $ref)"
for i in $(seq "$runs"); do
  for mode in rate50 max rate250; do
    for build in old early no-early; do
      dir=$root
      [ "$build" = old ] && dir=$old
      args=(--workflow bench.three_step --task-queue-workers 1)
      case $mode in
        max) args+=(--sagas 3000) ;;
        rate50) args+=(--sagas 1000 --rate 50) ;;
        rate250) args+=(--sagas 1000 --rate 250) ;;
      esac
      [ "$build" = no-early ] && args+=(--engine-arg=--no-early-dispatch)
      echo "=== run $i $build $mode | $(uptime | sed 's/.*load/load/')"
      PYTHONPATH="$dir" "$py" "$dir/bench/engine_bench.py" "${args[@]}" 2>&1 \
        | grep -E "^(throughput|latency)" || echo "(run failed)"
    done
  done
done
