#!/usr/bin/env bash
# A rollout to a version nobody runs (issue 19, item 7) on a real local cluster (only v1 runs):
#  - `wanctl rollout set expert-low --stable v9 ...` is refused, naming what runs; with --force it
#    is written (with a warning), and a canary version nobody runs is only a warning;
#  - with the forced key in place, requests still succeed: the router falls back to the live
#    version, as it does for a canary with no replica, and logs it.
# Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
if ! "$LC" up > "$T/up.log" 2>&1; then
  fail rollout_absent_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass rollout_absent_cluster_up
W="$bin/wanctl"
key() { "$W" status 2> /dev/null | sed -n 's/^rollout expert-low = //p'; }

"$W" rollout set expert-low --stable v9 --canary v1 --percent 10 > "$T/r1.out" 2> "$T/r1.err"
rc=$?
check rollout_absent_stable_refused test $rc -ne 0 -a -z "$(key)"
check rollout_absent_refusal_names_running grep -q "stable version v9 (running: v1)" "$T/r1.err"

"$W" rollout set expert-low --stable v1 --canary v7 --percent 50 > "$T/r2.out" 2> "$T/r2.err"
check rollout_absent_canary_only_warns test $? -eq 0 -a -n "$(key)"
check rollout_absent_canary_warning grep -q "warning: no live expert-low replica runs canary version v7" "$T/r2.err"

"$W" rollout set expert-low --stable v9 --canary v8 --percent 50 --force > "$T/r3.out" 2> "$T/r3.err"
check rollout_absent_force_writes test $? -eq 0 -a "$(key | grep -c '"stable":"v9"')" = 1
# the router's side on its own: the same key written straight to etcd
ETCDCTL_API=3 etcdctl --endpoints "$(cat "$WANSERVE_HOME/local-cluster/etcd.addr")" put \
  /wanserve/v1/rollout/expert-low '{"stable":"v9","canary":"v8","percent":50,"mode":"split"}' \
  > /dev/null
sleep 0.5 # the router's watch sees the key
ok=0
for i in 1 2 3; do
  "$W" generate --size 64x64 --frames 9 --steps 4 --seed "$i" --prompt "nobody runs v9" \
    --out "$T/g$i.mp4" > /dev/null 2> "$T/g$i.err" && ok=$((ok + 1))
done
check rollout_absent_requests_fall_back test $ok -eq 3
check rollout_absent_fallback_logged grep -q "stable v9 of expert-low has no live replica" \
  "$WANSERVE_HOME/local-cluster/logs/router.log"
