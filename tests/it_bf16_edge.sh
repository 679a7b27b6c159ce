#!/usr/bin/env bash
# it_bf16_edge.sh — `wan-router --bf16-edge-steps K` (issue 20, item 5): with a bf16 and an FP8
# replica of each expert role, the first and last K steps of a request go to the bf16 replicas
# and the middle steps to either; a router without the flag has no preference. Reads the
# replica of every step from wanctl generate's progress lines and the precisions from status.
source "$(dirname "$0")/itlib.sh"
K=2
STEPS=24
"$LC" up --high 1 --low 1 --router-flags "--bf16-edge-steps $K" > "$T/up.txt" 2>&1 ||
  { fail bf16_edge_cluster_up "$(tail -n 5 "$T/up.txt")"; exit 1; }
"$LC" add high --flags "--precision fp8" > /dev/null 2>&1
"$LC" add low --flags "--precision fp8" > /dev/null 2>&1
for _ in $(seq 100); do
  [ "$("$bin/wanctl" status 2>/dev/null | grep -c '^expert-.* fp8 ')" -ge 2 ] && break
  sleep 0.1
done
"$bin/wanctl" status > "$T/status.txt" 2>&1
awk '/^expert-/ && $6 == "bf16" { print $2 }' "$T/status.txt" > "$T/bf16.ids"
awk '/^expert-/ && $6 == "fp8" { print $2 }' "$T/status.txt" > "$T/fp8.ids"
check bf16_edge_two_precisions test "$(wc -l < "$T/bf16.ids")" -eq 2 -a "$(wc -l < "$T/fp8.ids")" -eq 2
"$bin/wanctl" generate --prompt "a red fox walks through snow" --size 64x64 --frames 9 \
  --steps $STEPS --seed 5 --out "$T/a.mp4" > "$T/gen.txt" 2>&1
check bf16_edge_generate_ok grep -q "^wrote " "$T/gen.txt"
# "step N/STEPS t=... ROLE replica=ID version=V ..." -> "N ID"
sed -n 's/^step \([0-9]*\)\/[0-9]* .* replica=\([^ ]*\) .*/\1 \2/p' "$T/gen.txt" > "$T/steps.txt"
check bf16_edge_every_step_seen test "$(wc -l < "$T/steps.txt")" -eq $STEPS
edge_ok=1 mid_fp8=0
while read -r n id; do
  if [ "$n" -le $K ] || [ "$n" -gt $((STEPS - K)) ]; then
    grep -qx "$id" "$T/bf16.ids" || { edge_ok=0; echo "  step $n on $id (not bf16)"; }
  elif grep -qx "$id" "$T/fp8.ids"; then
    mid_fp8=$((mid_fp8 + 1))
  fi
done < "$T/steps.txt"
check bf16_edge_first_and_last_steps_on_bf16 test $edge_ok -eq 1
check bf16_edge_middle_steps_use_fp8 test $mid_fp8 -gt 0
exit 0
