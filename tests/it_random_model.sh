#!/usr/bin/env bash
# The random model source (models/random_model.h) through the whole cluster: every service
# builds its component from `--model random:tiny` on its backend, nothing on disk; the video
# equals `wanctl generate --local` with the same source (latent and decoded frames), and a bad
# source is refused by every binary with a message naming the known ones.
. "$(dirname "$0")/itlib.sh"
G="$bin/wanctl generate --size 64x64 --frames 9 --seed 3 --steps 4"
framemd5() { ffmpeg -v error -i "$1" -f framemd5 - 2>/dev/null | grep -v '^#'; }

if ! "$LC" up --model random:tiny:5 > "$T/up.log" 2>&1; then
  fail random_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass random_cluster_up
$G --prompt "noise" --out "$T/c.mp4" --latent-out "$T/c.st" > /dev/null 2> "$T/c.err"
check random_cluster_generates test -s "$T/c.mp4"
$G --local --model random:tiny:5 --prompt "noise" --out "$T/l.mp4" --latent-out "$T/l.st" \
  > /dev/null 2> "$T/l.err"
check random_latent_equals_local cmp -s "$T/c.st" "$T/l.st"
check random_frames_equal_local test -n "$(framemd5 "$T/c.mp4")" -a \
  "$(framemd5 "$T/c.mp4")" = "$(framemd5 "$T/l.mp4")"
$G --local --model random:tiny:6 --prompt "noise" --latent-out "$T/l6.st" --out "$T/l6.mp4" \
  > /dev/null 2>&1
check random_seed_changes_weights test -s "$T/l6.st" -a "$(cmp -s "$T/l.st" "$T/l6.st"; echo $?)" = 1
"$LC" down > /dev/null 2>&1

bad_refused() { # BINARY ARGS...: exits non-zero naming the known random models
  "$@" > "$T/bad.out" 2>&1 && return 1
  grep -q "random:t2v-a14b" "$T/bad.out"
}
check random_unknown_refused_expert bad_refused "$bin/wan-expert" --role high --model random:nope
check random_unknown_refused_encoder bad_refused "$bin/wan-encoder" --model random:nope
check random_unknown_refused_decoder bad_refused "$bin/wan-decoder" --model random:nope
check random_unknown_refused_local bad_refused $G --local --model random:nope --prompt x
