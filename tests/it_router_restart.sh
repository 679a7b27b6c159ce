#!/usr/bin/env bash
# A router killed with SIGKILL in the middle of a request and started again on the same address:
# `wanctl generate` sends the request again (--retries) and, generation being deterministic,
# gets the same video as an undisturbed run. Also a random seed (--seed -1) is drawn by the
# client, so the resent request reproduces it.
source "$(dirname "$0")/itlib.sh"

if ! "$LC" up --expert-flags "--step-delay-ms 150" > "$T/up.log" 2>&1; then
  fail router_restart_setup "$(tail -n 3 "$T/up.log")"; exit 1
fi
state="$WANSERVE_HOME/local-cluster"
R=$(cat "$state/router.addr")
G=("$bin/wanctl" generate --size 64x64 --frames 5 --steps 12 --seed 21 --prompt "a windmill in fog")
"${G[@]}" --quiet --out "$T/ref.mp4" --latent-out "$T/ref.st" > /dev/null 2> "$T/ref.err" ||
  { fail router_restart_setup "$(tail -n 2 "$T/ref.err")"; exit 1; }

"${G[@]}" --retries 5 --out "$T/b.mp4" --latent-out "$T/b.st" > "$T/b.out" 2> "$T/b.err" &
gpid=$!
# wait until the request is a few steps in, then kill the router and start it again
for _ in $(seq 200); do grep -q "step 3/12\|3/12" "$T/b.err" 2> /dev/null && break; sleep 0.05; done
rpid=$(awk '$1 == "router" {print $2}' "$state/procs")
mapfile -d '' args < "/proc/$rpid/cmdline"
kill -KILL "$rpid"
wait "$rpid" 2> /dev/null
"${args[@]}" --listen "$R" >> "$state/logs/router.log" 2>&1 < /dev/null &
newpid=$!
sed -i "s/^router $rpid /router $newpid /" "$state/procs"
if wait $gpid; then pass router_restart_request_completes
else fail router_restart_request_completes "$(tail -n 2 "$T/b.err")"; fi
check router_restart_request_was_resent grep -q "sending the request again" "$T/b.err"
check router_restart_same_latent cmp -s "$T/b.st" "$T/ref.st"
check router_restart_same_video cmp -s "$T/b.mp4" "$T/ref.mp4"

# a random seed is chosen by the client and printed, so the video can be made again
"$bin/wanctl" generate --size 64x64 --frames 5 --steps 2 --seed -1 --prompt "x" --out "$T/r.mp4" \
  --latent-out "$T/r.st" > /dev/null 2> "$T/r.err"
seed=$(sed -n 's/^seed \([0-9]*\)$/\1/p' "$T/r.err")
"$bin/wanctl" generate --size 64x64 --frames 5 --steps 2 --seed "${seed:-0}" --prompt "x" --quiet \
  --out "$T/r2.mp4" --latent-out "$T/r2.st" > /dev/null 2>&1
if [ -n "$seed" ] && cmp -s "$T/r.st" "$T/r2.st"; then pass router_restart_random_seed_reproducible
else fail router_restart_random_seed_reproducible "seed '${seed}'"; fi
