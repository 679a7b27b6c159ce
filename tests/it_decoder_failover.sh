#!/usr/bin/env bash
# A decoder killed with SIGKILL in the middle of streaming a video, after part of the MP4 has
# reached the client: the router finishes the request on the other decoder, checking that the
# new decoder's output begins with the bytes the client already has and sending only the rest.
# PASS when the video is byte-identical to an undisturbed run with the same seed and the router
# logged a resume after bytes had been forwarded.
source "$(dirname "$0")/itlib.sh"

"$LC" up --high 1 --low 1 > "$T/up.log" 2>&1 || { fail decoder_failover_setup "$(tail -n 3 "$T/up.log")"; exit 1; }
"$LC" add decoder > /dev/null 2>&1 || { fail decoder_failover_setup "add decoder"; exit 1; }
state="$WANSERVE_HOME/local-cluster"
# long enough that the decode streams for a while: 81 frames, ~5 fragments (a keyframe a second)
G=("$bin/wanctl" generate --size 128x128 --frames 81 --steps 2 --seed 5 --prompt "a slow river" --quiet)
"${G[@]}" --out "$T/ref.mp4" > /dev/null 2> "$T/ref.err" || { fail decoder_failover_setup "$(tail -n 2 "$T/ref.err")"; exit 1; }
# the decode's duration, from the decoder that served it ("Decode ID: ... bytes in N messages, S s")
dsec=$(grep -h "Decode .* messages" "$state"/logs/decoder-*.log | sed -n 's/.* \([0-9.]*\) s$/\1/p' | tail -n 1)
echo "  undisturbed decode: ${dsec:-?} s, $(stat -c %s "$T/ref.mp4") bytes"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2> /dev/null || echo 0; }
dec_pids=$(awk '$1 ~ /^decoder-/ {print $2}' "$state/procs")
resumed=0
for attempt in 1 2 3; do
  "${G[@]}" --out "$T/b.mp4" > /dev/null 2> "$T/b.err" &
  gpid=$!
  # the decoder whose CPU time grows is the one decoding; kill it part-way through its work
  declare -A t0=()
  victim=""
  for _ in $(seq 600); do
    for p in $dec_pids; do
      t=$(cpu_ticks "$p")
      if [ -n "${t0[$p]:-}" ] && [ $((t - t0[$p])) -gt 5 ]; then victim=$p; fi
      [ -n "${t0[$p]:-}" ] || t0[$p]=$t
    done
    [ -n "$victim" ] && break
    sleep 0.05
  done
  [ -n "$victim" ] && sleep "$(awk -v d="${dsec:-2}" -v a=$attempt 'BEGIN {printf "%.2f", d * (0.35 + 0.15 * a)}')"
  [ -n "$victim" ] && kill -KILL "$victim" 2> /dev/null
  wait $gpid
  grc=$?
  if [ $grc -ne 0 ]; then fail decoder_failover_request_completes "$(tail -n 2 "$T/b.err")"; exit 1; fi
  # "decode on ID failed after N bytes (M with the client: ...)"
  m=$(grep -h "decode on .* failed after" "$state/logs/router.log" | tail -n 1 | sed -n 's/.*(\([0-9]*\) with the client.*/\1/p')
  echo "  attempt $attempt: killed pid ${victim:-none}; client had ${m:-0} bytes at the failure"
  if [ -n "$m" ] && [ "$m" -gt 0 ]; then resumed=1; break; fi
  # the killed decoder is gone: bring a replacement for the next attempt
  "$LC" add decoder > /dev/null 2>&1
  dec_pids=$(awk '$1 ~ /^decoder-/ {print $2}' "$state/procs" | while read -r p; do kill -0 "$p" 2> /dev/null && echo "$p"; done)
done
pass decoder_failover_request_completes
if [ $resumed -eq 1 ]; then pass decoder_failover_resumed_mid_stream
else fail decoder_failover_resumed_mid_stream "the kill never landed after bytes reached the client"; fi
if cmp -s "$T/b.mp4" "$T/ref.mp4"; then pass decoder_failover_video_byte_identical
else fail decoder_failover_video_byte_identical "$(stat -c %s "$T/b.mp4") vs $(stat -c %s "$T/ref.mp4") bytes"; fi
