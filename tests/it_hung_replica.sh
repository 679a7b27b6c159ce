#!/usr/bin/env bash
# A hung replica (issue 19, item 4) on a real local cluster with two low experts: one of them is
# stopped (SIGSTOP) in the middle of a request and only continued (SIGCONT) 30 s later. Its
# lease lapses within ~5 s; the router abandons the call it has in flight there and retries the
# step on the other replica, so the request completes long before the 30 s (and the 120 s step
# timeout) with the same latent as --local. Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
stopped=""
cleanup() {
  [ -n "$stopped" ] && kill -CONT "$stopped" 2> /dev/null
  it_cleanup
}
trap cleanup EXIT
state="$WANSERVE_HOME/local-cluster"
if ! "$LC" up --high 1 --low 2 --expert-flags "--step-delay-ms 150" > "$T/up.log" 2>&1; then
  fail hung_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass hung_cluster_up
model=$("$LC" status | sed -n 's/^model: //p')
G="$bin/wanctl generate --size 64x64 --frames 9 --seed 5 --steps 40 --prompt hung"
$G --local --model "$model" --latent-out "$T/local.st" --out "$T/local.mp4" > /dev/null 2>&1
t0=$(date +%s)
$G --latent-out "$T/c.st" --out "$T/c.mp4" > /dev/null 2> "$T/c.err" &
gpid=$!
for _ in $(seq 600); do grep -q "expert-low replica=" "$T/c.err" 2> /dev/null && break; sleep 0.05; done
rid=$(grep -o "expert-low replica=[^ ]*" "$T/c.err" | tail -n 1 | cut -d= -f2)
idx=$(echo "$rid" | sed 's/^expert-low-\([0-9]*\)-.*/\1/')
stopped=$(awk -v n="low-$idx" '$1 == n {print $2}' "$state/procs")
[ -n "$stopped" ] && kill -STOP "$stopped"
( sleep 30; kill -CONT "$stopped" 2> /dev/null ) &
wait $gpid
grc=$?
dt=$(($(date +%s) - t0))
echo "  request with a replica stopped for 30 s: $dt s (rc $grc)"
check hung_request_completes test $grc -eq 0 -a -n "$stopped"
check hung_request_not_held_by_the_stopped_replica test $dt -lt 25
check hung_result_bit_identical cmp -s "$T/local.st" "$T/c.st"
