# Shared set-up of the sitting scripts (sourced, not run): a worktree of the old git
# ref at $old, removed on exit, and one local broker for every run unless
# KAFKA_BOOTSTRAP_SERVERS is set. Expects $ref; sets $root, $py, $old.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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
