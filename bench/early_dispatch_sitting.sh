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
root=$(cd "$(dirname "$0")/.." && pwd)
py="$root/.venv/bin/python"
old="$(mktemp -d)/old"
git -C "$root" worktree add --detach "$old" "$ref" >/dev/null 2>&1
stack_pid=""
cleanup() {
  [ -n "$stack_pid" ] && kill "$stack_pid" 2>/dev/null || true
  git -C "$root" worktree remove --force "$old" >/dev/null 2>&1 || true
}
trap cleanup EXIT
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  log=$(mktemp)
  "$py" -m orchestrator.devstack up >"$log" 2>&1 &
  stack_pid=$!
  for _ in $(seq 120); do grep -q "^export KAFKA" "$log" && break; sleep 1; done
  eval "$(grep '^export KAFKA' "$log")"
fi
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
