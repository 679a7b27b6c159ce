#!/usr/bin/env bash
# Runs docs/rollout.md as written: every ```sh block, in order, in one bash (set -e: any failing
# command fails the walk-through) from the repository root, in a temporary WANSERVE_HOME, then
# checks the outcomes the page promises. The blocks run in their own process group, which is
# killed at the end with the local cluster, so nothing they start survives. Prints PASS/FAIL.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
export BUILD=${BUILD:-build}
export WANSERVE_HOME
WANSERVE_HOME=$(mktemp -d)
T=$(mktemp -d)
pgid=""
cleanup() {
  [ -n "$pgid" ] && kill -TERM -- "-$pgid" 2>/dev/null
  deploy/local-cluster down > /dev/null 2>&1
  [ -n "${KEEP:-}" ] && cat "$T/out"
  rm -rf "$WANSERVE_HOME" "$T"
}
trap cleanup EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }

{
  echo 'set -euo pipefail'
  awk '/^```sh$/ { on = 1; next } /^```$/ { on = 0 } on' docs/rollout.md
} > "$T/walk.sh"
check walkthrough_has_blocks test "$(grep -c . "$T/walk.sh")" -gt 20
setsid bash "$T/walk.sh" > "$T/out" 2>&1 &
pid=$!
pgid=$pid
timeout=300
while kill -0 "$pid" 2>/dev/null && [ $timeout -gt 0 ]; do sleep 1; timeout=$((timeout - 1)); done
kill -0 "$pid" 2>/dev/null && { fail walkthrough_finishes "still running after 300 s"; exit 1; }
wait "$pid"; rc=$?
check walkthrough_runs_as_written test $rc -eq 0
[ $rc -eq 0 ] || tail -n 30 "$T/out"
o="$T/out"
check walkthrough_stable_unchanged_by_shadow grep -q "stable result unchanged by the shadow canary" "$o"
check walkthrough_verdict_pass grep -q "verdict: PASS (p99 0 <= threshold 0.001)" "$o"
check walkthrough_promoted grep -q 'rollout expert-low = {"stable":"v2","percent":0,"mode":"split"}' "$o"
check walkthrough_stable_unchanged_by_diverging grep -q "stable result unchanged by the diverging canary" "$o"
check walkthrough_rolled_back grep -q "rollout key deleted: rolled back to v2" "$o"
check walkthrough_verdict_fail grep -q "verdict for v3: FAIL (exit status 3)" "$o"
check walkthrough_router_logged_rollback grep -q "canary v3 (stable v2) rolled back" "$o"
check walkthrough_pool_sizing_printed grep -q "recommended high:low replicas" "$o"
check walkthrough_fp8_registered grep -q "v1-fp8 .* fp8 " "$o"
check walkthrough_fp8_stable_unchanged grep -q "stable result unchanged by the FP8 shadow" "$o"
check walkthrough_fp8_within_threshold grep -q "v1-fp8 within 0.05 of v1 per step" "$o"
check walkthrough_cluster_down grep -q "local-cluster: down" "$o"
