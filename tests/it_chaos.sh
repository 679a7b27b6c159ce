#!/usr/bin/env bash
# CI variant of `make chaos` (deploy/chaos.sh): a short stream of concurrent requests against a
# local cluster (2 high + 2 low experts) while experts are killed with SIGKILL and replaced,
# etcd is restarted and the decoder is restarted. PASS when every request succeeded and every
# final latent is bit-identical to `wanctl generate --local` with the same seed.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
export BUILD
WANSERVE_HOME=$(mktemp -d)
export WANSERVE_HOME
trap 'rm -rf "$WANSERVE_HOME"' EXIT
out="$WANSERVE_HOME/chaos.out"
bash deploy/chaos.sh --requests "${IT_CHAOS_REQUESTS:-12}" --concurrency 3 --steps 8 \
  --step-delay-ms 120 --seeds 3 --pause-s 1.2 > "$out" 2>&1
rc=$?
grep -E '^chaos: (event|failed|requests)' "$out" | tail -n 30
summary=$(grep '^chaos: requests' "$out" | tail -n 1)
if [ $rc -eq 0 ]; then
  echo "PASS chaos_all_requests_ok_bit_identical (${summary#chaos: })"
else
  echo "FAIL chaos_all_requests_ok_bit_identical: ${summary:-$(tail -n 3 "$out")}"
fi
