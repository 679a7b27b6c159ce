#!/usr/bin/env bash
# Abandoned work (issue 19, item 2) on a real local cluster: a client that leaves in the middle
# of a step must free the expert. A 512x512x33 request (a tiny-model forward of several seconds)
# is started with wanctl and killed while its first step runs on the high expert; the router
# cancels its Denoise call, and the expert stops that forward at a block boundary (counted in
# wanserve_expert_abandoned_total{stage="forward"}). A small request right after is served at
# once. Without the fix the forward runs to its end and the router only notices at the next step.
# Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
state="$WANSERVE_HOME/local-cluster"
if ! "$LC" up --high 1 --low 1 > "$T/up.log" 2>&1; then
  fail abandon_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass abandon_cluster_up
hm=$(cat "$state/high-0.addr.metrics")
metric() { # SERIES-PREFIX: summed over every matching line of the high expert
  curl -fsS "http://$hm/metrics" 2> /dev/null | awk -v p="$1" 'index($0, p) == 1 { s += $NF } END { print s + 0 }'
}
wait_for() { local n=$(($1 * 10)); shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done; return 1; }
busy() { [ "$(metric 'wanserve_expert_inflight{')" -ge 1 ]; }
stopped() { [ "$(metric 'wanserve_expert_abandoned_total{role="expert-high",version="v1",stage="forward"')" -ge 1 ]; }

"$bin/wanctl" generate --size 512x512 --frames 33 --steps 4 --prompt "left early" --out "$T/big.mp4" \
  > /dev/null 2> "$T/big.err" &
gpid=$!
if wait_for 60 busy; then
  sleep 0.5 # well inside the forward
  kill -KILL "$gpid"
  wait "$gpid" 2> /dev/null
  check abandon_forward_stopped_when_the_client_left wait_for 30 stopped
else
  kill -KILL "$gpid" 2> /dev/null
  fail abandon_forward_stopped_when_the_client_left "the big step never reached the expert"
fi
t0=$(date +%s.%N)
"$bin/wanctl" generate --size 64x64 --frames 9 --steps 4 --prompt "right after" --out "$T/small.mp4" \
  > /dev/null 2> "$T/small.err"
grc=$?
dt=$(echo "$(date +%s.%N) - $t0" | bc)
echo "  small request after the abandoned one: $dt s"
check abandon_next_request_served_at_once test $grc -eq 0 -a "$(echo "$dt < 8" | bc)" -eq 1
