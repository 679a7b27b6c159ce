#!/usr/bin/env bash
# Black-box tests of the whole cluster: the real binaries on 127.0.0.1, a real etcd, real gRPC,
# started with deploy/local-cluster. Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
G="$bin/wanctl generate --size 64x64 --frames 9 --seed 7"

lc_status() { "$LC" status 2>/dev/null; }
pid_of() { awk -v n="$1" '$1 == n {print $2}' "$WANSERVE_HOME/local-cluster/procs"; }
all_alive() { # every process but the one this test killed on purpose
  local ok=0
  while read -r name pid _; do
    [ "$pid" = "$victim" ] && continue
    kill -0 "$pid" 2>/dev/null || { echo "  $name (pid $pid) is down"; ok=1; }
  done \
    < "$WANSERVE_HOME/local-cluster/procs"
  return $ok
}
ffprobe_frames() { ffprobe -v error -count_frames -select_streams v:0 -show_entries \
  stream=codec_name,nb_read_frames -of csv=p=0 "$1" 2>/dev/null; }
wait_for_line() { # FILE PATTERN TIMEOUT_S
  for _ in $(seq $(($3 * 20))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}

if ! "$LC" up --high 1 --low 2 --expert-flags "--step-delay-ms 30" \
    --router-flags "--max-inflight 4 --max-queued 1 --replica-wait-ms 8000" > "$T/up.log" 2>&1; then
  fail cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass cluster_up
model=$(lc_status | sed -n 's/^model: //p')

# --- T2V through the cluster equals the in-process pipeline bit for bit
$G --local --model "$model" --prompt "a red fox walks through snow" --steps 6 \
  --out "$T/local.mp4" --latent-out "$T/local.st" > /dev/null 2> "$T/local.err"
$G --prompt "a red fox walks through snow" --steps 6 --out "$T/c.mp4" --latent-out "$T/c.st" \
  > /dev/null 2> "$T/c.err"
check t2v_latent_bit_identical_to_local cmp -s "$T/local.st" "$T/c.st"
check t2v_mp4_valid_per_ffprobe test "$(ffprobe_frames "$T/c.mp4")" = "h264,9"
# the decoded frames too, not only the latent: the decoder service and --local encode with the
# same x264 settings (threads, GOP) whatever the machine's core count
framemd5() { ffmpeg -v error -i "$1" -f framemd5 - 2>/dev/null | grep -v '^#'; }
check t2v_frames_identical_to_local test -n "$(framemd5 "$T/c.mp4")" -a \
  "$(framemd5 "$T/c.mp4")" = "$(framemd5 "$T/local.mp4")"

# --- kill -9 a low expert in the middle of a request: same result, instance leaves etcd
$G --local --model "$model" --prompt "a storm at sea" --steps 24 --latent-out "$T/k_local.st" \
  --out "$T/k_local.mp4" > /dev/null 2>&1
$bin/wanctl generate --size 64x64 --frames 9 --seed 7 --prompt "a storm at sea" --steps 24 \
  --latent-out "$T/k.st" --out "$T/k.mp4" > "$T/k.out" 2> "$T/k.err" &
gpid=$!
victim=""
if wait_for_line "$T/k.err" "expert-low replica=" 30; then
  rid=$(grep -o "expert-low replica=[^ ]*" "$T/k.err" | head -n 1 | cut -d= -f2)
  idx=$(echo "$rid" | sed 's/^expert-low-\([0-9]*\)-.*/\1/')
  victim=$(pid_of "low-$idx")
  kill -9 "$victim"
fi
wait $gpid; grc=$?
check kill9_request_completes test $grc -eq 0 -a -n "$victim"
check kill9_result_bit_identical cmp -s "$T/k_local.st" "$T/k.st"
check kill9_retry_seen grep -q "version=v1" "$T/k.err"
gone=1
for _ in $(seq 100); do
  $bin/wanctl status 2>/dev/null | grep -q "$rid" || { gone=0; break; }
  sleep 0.1
done
check kill9_instance_leaves_etcd_within_ttl test $gone -eq 0 -a -n "$rid"

# --- etcd stopped in the middle of a request: it completes; etcd back -> registrations return
$bin/wanctl generate --size 64x64 --frames 9 --seed 8 --prompt "etcd outage" --steps 24 \
  --out "$T/e.mp4" > "$T/e.out" 2> "$T/e.err" &
gpid=$!
wait_for_line "$T/e.err" "step 2/" 30 && "$LC" etcd-stop > /dev/null
wait $gpid; grc=$?
check etcd_down_request_completes test $grc -eq 0
"$LC" etcd-start > /dev/null
back=1
for _ in $(seq 150); do
  n=$($bin/wanctl status 2>/dev/null | grep -c "127.0.0.1:")
  [ "$n" -ge 5 ] && { back=0; break; }
  sleep 0.1
done
check etcd_back_registrations_return test $back -eq 0

# --- canary split: 50% of requests to low v2, sticky per request; clearing rolls back
"$LC" add low --version v2 > /dev/null
$bin/wanctl rollout set expert-low --canary v2 --percent 50 --stable v1 > /dev/null
sleep 1 # the router's watch sees the key
v2=0; mixed=0
for i in $(seq 1 12); do
  $G --prompt "canary $i" --steps 8 --request-id "canary-req-$i" --out "$T/can.mp4" > /dev/null \
    2> "$T/can.err"
  vs=$(grep "expert-low" "$T/can.err" | grep -o "version=[^ ]*" | sort -u)
  [ "$(echo "$vs" | wc -l)" -eq 1 ] || mixed=1
  [ "$vs" = "version=v2" ] && v2=$((v2 + 1))
done
check canary_sticky_per_request test $mixed -eq 0
check canary_split_about_even test $v2 -ge 2 -a $v2 -le 10
$bin/wanctl rollout clear expert-low > /dev/null
sleep 1
stable=0
for i in $(seq 1 6); do
  $G --prompt "after $i" --steps 8 --request-id "canary-req-$i" --out "$T/can.mp4" > /dev/null \
    2> "$T/can.err"
  grep "expert-low" "$T/can.err" | grep -q "version=v2" && stable=1
done
check canary_cleared_all_stable test $stable -eq 0

# --- concurrent requests: all complete, high and low pools busy at the same time
pids=()
for i in 1 2 3 4; do
  $G --prompt "concurrent $i" --steps 16 --out "$T/cc$i.mp4" > /dev/null 2> "$T/cc$i.err" &
  pids+=($!)
  sleep 0.25
done
ok=0
for p in "${pids[@]}"; do wait "$p" || ok=1; done
check concurrent_all_complete test $ok -eq 0
overlap=$(for i in 1 2 3 4; do
  awk -v r=$i '/^step/ { split($0, a, "at="); role = ($4 ~ /high/) ? "H" : "L"; print r, role, a[2] }' "$T/cc$i.err"
done | awk '{ k = $1 SUBSEP $2; if (!(k in lo) || $3 < lo[k]) lo[k] = $3; if ($3 > hi[k]) hi[k] = $3 }
  END { for (a = 1; a <= 4; a++) for (b = 1; b <= 4; b++) if (a != b && ((a, "H") in lo) && ((b, "L") in lo))
          if (lo[a, "H"] <= hi[b, "L"] && lo[b, "L"] <= hi[a, "H"]) { print "yes"; exit } }')
check concurrent_high_and_low_pools_busy_together test "$overlap" = yes

# --- bad requests: INVALID_ARGUMENT naming the field; overload: RESOURCE_EXHAUSTED
bad() { # NAME FIELD ARGS...
  local n=$1 field=$2; shift 2
  $bin/wanctl generate --quiet --out "$T/bad.mp4" "$@" > /dev/null 2> "$T/bad.err"
  if grep -q "INVALID_ARGUMENT" "$T/bad.err" && grep -q "$field" "$T/bad.err"; then pass "$n"
  else fail "$n" "$(cat "$T/bad.err")"; fi
}
bad bad_width_not_multiple_of_16 width --prompt x --size 60x64 --frames 9
bad bad_frames_not_4n_plus_1 frames --prompt x --size 64x64 --frames 10
bad bad_size_over_limit width --prompt x --size 4096x64 --frames 9
bad bad_steps_over_limit steps --prompt x --size 64x64 --frames 9 --steps 900
bad bad_empty_prompt prompt --prompt "" --size 64x64 --frames 9
echo "not an image" > "$T/notimg.png"
bad bad_i2v_not_an_image image --task i2v --image "$T/notimg.png" --prompt x --size 64x64 --frames 9
bad bad_image_for_t2v image --task t2v --image "$T/notimg.png" --prompt x --size 64x64 --frames 9
bad bad_request_id_with_newline request_id --prompt x --size 64x64 --frames 9 \
  --request-id "$(printf 'r1\n00:00:00.000 INFO  forged')"
pids=()
# 10 requests of 40 slow steps (>= 1.2 s each) against 4 in flight + 1 queued: even when the
# clients start slowly on a loaded machine, more than 5 overlap
for i in $(seq 1 10); do
  $G --prompt "flood $i" --steps 40 --out "$T/fl$i.mp4" > /dev/null 2> "$T/fl$i.err" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
check overload_resource_exhausted grep -lq "RESOURCE_EXHAUSTED" "$T"/fl*.err
$G --prompt "still up" --steps 4 --out "$T/up.mp4" > /dev/null 2> "$T/up.err"
check services_stay_up test $? -eq 0
check all_processes_alive all_alive

# --- I2V through a cluster of I2V experts equals the in-process pipeline
"$LC" down > /dev/null
$bin/wanctl make-tiny-model "$T/i2v-model" --i2v > /dev/null
ffmpeg -v error -f lavfi -i testsrc=size=80x48 -frames:v 1 "$T/img.png"
if "$LC" up --model "$T/i2v-model" > "$T/up2.log" 2>&1; then
  $G --task i2v --image "$T/img.png" --local --model "$T/i2v-model" --prompt "it moves" --steps 6 \
    --out "$T/il.mp4" --latent-out "$T/il.st" > /dev/null 2>&1
  $G --task i2v --image "$T/img.png" --prompt "it moves" --steps 6 --out "$T/ic.mp4" \
    --latent-out "$T/ic.st" > /dev/null 2> "$T/ic.err"
  check i2v_latent_bit_identical_to_local cmp -s "$T/il.st" "$T/ic.st"
  check i2v_mp4_valid_per_ffprobe test "$(ffprobe_frames "$T/ic.mp4")" = "h264,9"
else
  fail i2v_cluster_up "$(tail -n 5 "$T/up2.log")"
fi
