#!/usr/bin/env bash
# Bad replicas (issue 19, item 3) on a real local cluster: registrations in etcd that do not
# work must not fail requests. Next to one good replica per role, fake keys are written with
# etcdctl: expert-low entries pointing at the encoder (UNIMPLEMENTED for Denoise), at the
# high-noise expert (its Expert.Info says expert-high: it would make wrong videos), and at six
# closed ports (connect failures); an encoder entry pointing at an expert (UNIMPLEMENTED for
# EncodeText) and a dead decoder. Every request must succeed with the latent of `--local`
# (bit for bit: the high expert never served a low step), the router must log the ejections
# and the Info mismatch, and once the bad entries are known no step is retried any more.
# Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
G="$bin/wanctl generate --size 64x64 --frames 9 --seed 3 --steps 6 --prompt bad-replicas"
state="$WANSERVE_HOME/local-cluster"

if ! "$LC" up --high 1 --low 1 --router-flags "--eject-ms 60000 --replica-wait-ms 2000" \
    > "$T/up.log" 2>&1; then
  fail bad_replicas_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass bad_replicas_cluster_up
model=$("$LC" status | sed -n 's/^model: //p')
etcd=$(cat "$state/etcd.addr")
enc=$(cat "$state/encoder-0.addr")
high=$(cat "$state/high-0.addr")
router_metrics=$(cat "$state/router.addr.metrics")
closed_port() { # a port nothing listens on
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 30000))
    (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null || { echo "$p"; return; }
  done
}
fake() { # ROLE ID ADDR: a registration without a lease (it stays until deleted)
  ETCDCTL_API=3 etcdctl --endpoints "$etcd" put "/wanserve/v1/instances/$1/$2" \
    "{\"addr\":\"$3\",\"role\":\"$1\",\"version\":\"v1\",\"model_digest\":\"$model\"}" > /dev/null
}
fake expert-low fake-unimplemented "$enc"
fake expert-low fake-wrong-role "$high"
for i in 1 2 3 4 5 6; do fake expert-low "dead-$i" "127.0.0.1:$(closed_port)"; done
fake encoder fake-encoder "$high"
fake decoder dead-decoder "127.0.0.1:$(closed_port)"
sleep 0.5 # the router's watch sees the keys

$G --local --model "$model" --latent-out "$T/local.st" --out "$T/local.mp4" > /dev/null 2>&1
log="$state/logs/router.log"
# every bad entry has been met once the router has logged it as ejected or refused; which
# replica a step meets first is the pool's choice, so how many requests that takes varies
all_met() {
  local id
  for id in fake-unimplemented fake-wrong-role dead-1 dead-2 dead-3 dead-4 dead-5 dead-6 \
    fake-encoder dead-decoder; do
    grep -qE "$id .*(ejected|is no expert)|$id.*Expert.Info says" "$log" || return 1
  done
}
failed=0 differ=0 met_at=0
for i in $(seq 1 25); do
  if $G --latent-out "$T/c$i.st" --out "$T/c$i.mp4" > /dev/null 2> "$T/c$i.err"; then
    cmp -s "$T/local.st" "$T/c$i.st" || differ=$((differ + 1))
  else
    failed=$((failed + 1))
    echo "  request $i: $(tail -n 1 "$T/c$i.err")"
  fi
  # once every bad entry has been met, the retry count must stop growing: 5 more requests
  if [ "$met_at" -eq 0 ] && all_met; then
    met_at=$i
    curl -fsS "http://$router_metrics/metrics" > "$T/m5.txt"
  fi
  [ "$i" -ge 10 ] && [ "$met_at" -gt 0 ] && [ "$i" -ge $((met_at + 5)) ] && break
done
curl -fsS "http://$router_metrics/metrics" > "$T/m10.txt"
echo "  every bad entry met after $met_at requests; $i requests in all"
check bad_replicas_every_request_succeeds test $failed -eq 0
check bad_replicas_results_bit_identical_to_local test $differ -eq 0 -a $failed -eq 0
check bad_replicas_wrong_role_found_by_info grep -q "fake-wrong-role.*Expert.Info says expert-high" "$log"
check bad_replicas_unimplemented_not_an_expert grep -q "replica fake-unimplemented .* is no expert" "$log"
check bad_replicas_dead_ejected grep -q "replica dead-[0-9].*ejected" "$log"
check bad_replicas_fake_encoder_ejected grep -q "encoder replica fake-encoder.*ejected" "$log"
check bad_replicas_dead_decoder_ejected grep -q "decoder replica dead-decoder.*ejected" "$log"
retries() { awk '/^wanserve_router_step_retries_total/ { s += $NF } END { print s + 0 }' "$1"; }
r5=$(retries "$T/m5.txt") r10=$(retries "$T/m10.txt")
if [ "$met_at" -gt 0 ] && [ "$r5" -gt 0 ] && [ "$r5" = "$r10" ]; then
  pass bad_replicas_no_retries_once_ejected
else
  fail bad_replicas_no_retries_once_ejected \
    "step retries once all bad entries were met (request $met_at): $r5, at the end: $r10"
fi
