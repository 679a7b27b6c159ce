#!/usr/bin/env bash
# CI variant of the router half of `make chaos` (deploy/chaos_http.sh): HTTP video jobs on two
# routers while routers are killed with SIGKILL and restarted. PASS when no job was lost and
# every video has the frames of an undisturbed run with the same seed.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
export BUILD
WANSERVE_HOME=$(mktemp -d)
export WANSERVE_HOME
trap 'rm -rf "$WANSERVE_HOME"' EXIT
out="$WANSERVE_HOME/chaos-http.out"
bash deploy/chaos_http.sh --jobs "${IT_CHAOS_HTTP_JOBS:-12}" --concurrency 4 --steps 8 \
  --step-delay-ms 120 --kill-every-s 3 > "$out" 2>&1
rc=$?
grep -E '^chaos-http: (event|failed|jobs)' "$out" | tail -n 30
summary=$(grep '^chaos-http: jobs' "$out" | tail -n 1)
if [ $rc -eq 0 ]; then
  echo "PASS chaos_http_router_kills_no_lost_jobs (${summary#chaos-http: })"
else
  echo "FAIL chaos_http_router_kills_no_lost_jobs: ${summary:-$(tail -n 3 "$out")}"
fi
