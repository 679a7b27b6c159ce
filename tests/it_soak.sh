#!/usr/bin/env bash
# Soak and memory-budget tests (issue 9) on a local cluster (deploy/local-cluster):
#   - IT_SOAK_REQUESTS (default 96) requests, 2 at a time; the resident size of every service is
#     sampled after a warm-up quarter and at the end: growth must stay under 5 % + 12 MiB;
#   - --memory-budget-mb: a router and experts with budgets serve small requests, and answer
#     RESOURCE_EXHAUSTED (with a "memory budget" message) for work over their budget.
. "$(dirname "$0")/itlib.sh"
N=${IT_SOAK_REQUESTS:-96}

if ! "$LC" up --high 1 --low 1 --expert-flags "--memory-budget-mb 400" \
    --router-flags "--memory-budget-mb 1000 --max-inflight 8" > "$T/up.log" 2>&1; then
  fail soak_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass soak_cluster_up
procs="$WANSERVE_HOME/local-cluster/procs"
rss_all() { # "name kB" per service process
  while read -r name pid _; do
    [ "$name" = etcd ] && continue
    echo "$name $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
  done < "$procs"
}
G=("$bin/wanctl" generate --size 64x64 --frames 5 --steps 4 --quiet)
one() { "${G[@]}" --seed "$1" --prompt "soak request $(( $1 % 7 ))" --out "$T/o$(( $1 % 2 )).mp4" \
  > /dev/null 2> "$T/e$1.err" || echo "$1" >> "$T/failed"; }
: > "$T/failed"
warm=$(( N / 4 ))
t0=$(date +%s)
for i in $(seq 1 "$N"); do
  one "$i" &
  [ $(( i % 2 )) -eq 0 ] && wait
  [ "$i" -eq "$warm" ] && { wait; rss_all > "$T/rss.warm"; }
done
wait
rss_all > "$T/rss.end"
echo "  $N requests in $(( $(date +%s) - t0 )) s"
nf=$(wc -l < "$T/failed")
if [ "$nf" -eq 0 ]; then pass "soak_${N}_requests_ok"
else fail "soak_${N}_requests_ok" "$nf failed: $(tail -n 1 "$T/e$(head -n 1 "$T/failed").err")"; fi
flat=1
while read -r name kb; do
  w=$(awk -v n="$name" '$1 == n {print $2}' "$T/rss.warm")
  [ -z "$w" ] || [ "$w" -eq 0 ] && continue
  lim=$(( w + w / 20 + 12288 ))
  echo "  rss $name: $((w / 1024)) MiB after $warm requests, $((kb / 1024)) MiB after $N"
  [ "$kb" -le "$lim" ] || { flat=0; echo "  $name grew from $w kB to $kb kB (limit $lim kB)"; }
done < "$T/rss.end"
if grep -aq __asan_init "$bin/wan-router"; then
  # ASan's quarantine keeps freed memory resident (up to 256 MiB): RSS says nothing there
  echo "SKIP soak_rss_flat: sanitizer build (ASan quarantine holds freed memory)"
elif [ $flat -eq 1 ]; then pass soak_rss_flat; else fail soak_rss_flat; fi

# budgets: the router (1000 MiB) refuses a request whose sampler state alone is over it
if "${G[@]}" --size 1280x1280 --frames 241 --steps 2 --prompt big --out "$T/big.mp4" > /dev/null 2> "$T/big.err"; then
  fail router_budget_refuses_large
elif grep -q "RESOURCE_EXHAUSTED.*memory budget" "$T/big.err"; then pass router_budget_refuses_large
else fail router_budget_refuses_large "$(tail -n 1 "$T/big.err")"; fi
# the experts (400 MiB) refuse a step whose activations are over it; the router passes it on
if "${G[@]}" --size 1280x1280 --frames 81 --steps 2 --prompt mid --out "$T/mid.mp4" > /dev/null 2> "$T/mid.err"; then
  fail expert_budget_refuses_large
elif grep -q "RESOURCE_EXHAUSTED.*Denoise.*memory budget" "$T/mid.err"; then pass expert_budget_refuses_large
else fail expert_budget_refuses_large "$(tail -n 1 "$T/mid.err")"; fi
# and the cluster still serves normal requests afterwards
if "${G[@]}" --seed 3 --prompt after --out "$T/after.mp4" > /dev/null 2> "$T/after.err"; then pass budget_serves_after_refusal
else fail budget_serves_after_refusal "$(tail -n 1 "$T/after.err")"; fi
