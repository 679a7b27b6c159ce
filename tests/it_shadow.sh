#!/usr/bin/env bash
# Shadow canary rollouts on a real local cluster (deploy/local-cluster, real etcd, real gRPC):
#  - the stable result is bit-identical with and without a shadow canary, whether the canary
#    agrees (same weights) or diverges (other weights);
#  - the router records rel-L2(canary, stable) per mirrored step; `wanctl rollout status` shows
#    count/mean/p50/p99/max and a verdict against --threshold (exit 3 on FAIL);
#  - --auto-promote promotes an identical canary; --auto-rollback deletes the rollout of a
#    diverging one (a low expert with other weights) and logs it.
# Prints PASS/FAIL per check.
source "$(dirname "$0")/itlib.sh"
canary_pid=""
cleanup() {
  [ -n "$canary_pid" ] && kill -TERM "$canary_pid" 2>/dev/null && wait "$canary_pid" 2>/dev/null
  it_cleanup
}
trap cleanup EXIT
state="$WANSERVE_HOME/local-cluster"
# 24 steps at 64x64x9: 16 high, 8 low (shift 12, boundary 0.875)
G() { "$bin/wanctl" generate --size 64x64 --frames 9 --seed 11 --steps 24 --prompt "a lighthouse at dusk" "$@"; }
rollout_key() { "$bin/wanctl" status 2>/dev/null | sed -n 's/^rollout expert-low = //p'; }
wait_for() { # TIMEOUT_S CMD...: polls CMD every 0.2 s
  local n=$(($1 * 5)); shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.2; done
  return 1
}

if ! "$LC" up --high 1 --low 1 --router-flags "--stats-interval-ms 200 --auto-promote 0.001 \
    --auto-rollback 0.05 --shadow-min-samples 4" > "$T/up.log" 2>&1; then
  fail shadow_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass shadow_cluster_up

# --- baseline: no rollout
G --latent-out "$T/base.st" --out "$T/base.mp4" > /dev/null 2> "$T/base.err"
check shadow_baseline_generates test -s "$T/base.st"

# --- an identical canary (same weights, version v2) in shadow mode: stable answers, unchanged
"$LC" add low --version v2 > /dev/null
"$bin/wanctl" rollout set expert-low --stable v1 --canary v2 --percent 100 --mode shadow > /dev/null
sleep 0.3
G --latent-out "$T/same.st" --out "$T/same.mp4" > /dev/null 2> "$T/same.err"
check shadow_identical_canary_stable_result_unchanged cmp -s "$T/base.st" "$T/same.st"
check shadow_stable_version_answers \
  test "$(grep "expert-low" "$T/same.err" | grep -o "version=[^ ]*" | sort -u)" = "version=v1"
promoted() { rollout_key | grep -q '"stable":"v2"'; }
check shadow_auto_promote_identical_canary wait_for 10 promoted
"$bin/wanctl" rollout status expert-low --threshold 1e-6 > "$T/rs1.out" 2>&1
rc=$?
check shadow_status_counts_samples grep -Eq "count ([4-9]|[1-9][0-9]+) " "$T/rs1.out"
check shadow_status_identical_is_zero grep -q "p99 0 " "$T/rs1.out"
check shadow_status_verdict_pass test $rc -eq 0 -a "$(grep -c "verdict: PASS" "$T/rs1.out")" -ge 1
check shadow_promote_logged grep -q "automatic action: promoted" "$T/rs1.out"

# --- a diverging canary: a low expert with other weights (another seed), version v3
"$bin/wanctl" make-tiny-model "$T/other" --seed 99 > /dev/null
setsid "$bin/wan-expert" --role low --version v3 --model "$T/other" --etcd "$(cat "$state/etcd.addr")" \
  --id "expert-low-canary-$$" --addr-file "$T/canary.addr" > "$T/canary.log" 2>&1 < /dev/null &
canary_pid=$!
wait_for 60 test -s "$T/canary.addr" || fail shadow_canary_started "$(tail -n 5 "$T/canary.log")"
"$bin/wanctl" rollout set expert-low --stable v2 --canary v3 --percent 100 --mode shadow > /dev/null
sleep 0.3
G --latent-out "$T/div.st" --out "$T/div.mp4" > /dev/null 2> "$T/div.err"
check shadow_diverging_canary_stable_result_unchanged cmp -s "$T/base.st" "$T/div.st"
check shadow_diverging_stable_version_answers \
  test "$(grep "expert-low" "$T/div.err" | grep -o "version=[^ ]*" | sort -u)" = "version=v2"
rolled_back() { ! rollout_key | grep -q .; }
check shadow_auto_rollback_fires wait_for 10 rolled_back
"$bin/wanctl" rollout status expert-low --threshold 0.05 > "$T/rs2.out" 2>&1
rc=$?
check shadow_status_verdict_fail test $rc -eq 3 -a "$(grep -c "verdict: FAIL" "$T/rs2.out")" -ge 1
check shadow_rollback_reported grep -q "automatic action: rolled back" "$T/rs2.out"
check shadow_rollback_logged_by_router grep -q "canary v3 (stable v2) rolled back" "$state/logs/router.log"
# after the rollback the remembered stable (v2) serves, and the result is still the same
G --latent-out "$T/after.st" --out "$T/after.mp4" > /dev/null 2> "$T/after.err"
check shadow_after_rollback_same_result cmp -s "$T/base.st" "$T/after.st"
check shadow_after_rollback_no_canary_version \
  test -z "$(grep "expert-low" "$T/after.err" | grep "version=v3")"
# --- a shadow canary that nobody runs (issue 19, item 6): the stable path never waits for it
secs() { local t0; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; echo "$(date +%s.%N) - $t0" | bc; }
t_base=$(secs G --out "$T/nb.mp4")
"$bin/wanctl" rollout set expert-low --stable v2 --canary v9 --percent 100 --mode shadow \
  > /dev/null 2>&1
sleep 0.3
t_shadow=$(secs G --latent-out "$T/absent.st" --out "$T/absent.mp4")
echo "  24 steps: ${t_base} s without a shadow, ${t_shadow} s with a shadow canary nobody runs"
check shadow_absent_canary_result_unchanged cmp -s "$T/base.st" "$T/absent.st"
check shadow_absent_canary_does_not_delay test "$(echo "$t_shadow < $t_base + 2" | bc)" = 1
"$bin/wanctl" rollout clear expert-low > /dev/null
if [ -n "$(grep -l "FAIL\|rolled back" "$T"/rs*.out 2>/dev/null)" ] && [ -n "${VERBOSE:-}" ]; then
  cat "$T"/rs*.out
fi
