#!/usr/bin/env bash
# Black-box test of adapter routing (issue 16, deliverable 3): with two low-noise replicas, one
# holding adapter A merged (wan-expert --lora .../A.safetensors:0.7) and one holding A and B in
# its --lora-catalog, the registrations advertise both (wanctl status), a request naming A at
# 0.7 runs every low step on the merged replica (and, sent without the adapter field, makes the
# latent of `wanctl generate --local` merging the same file, bit for bit), one naming B or A at
# another strength goes to the catalog replica, the same holds under a rollout policy (stable
# v1), and an adapter nobody holds is INVALID_ARGUMENT naming it and the role (over HTTP a 400
# before any step runs). The merged and the unmerged A agree within float rounding only
# (docs/rollout.md, "Adapters: merged replicas first").
# Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"

$bin/wanctl make-tiny-model "$T/m" > /dev/null || { fail make_tiny_model; exit 1; }
mkdir -p "$T/cat" "$T/merged"
# two pair-only adapters (catalogs take no .diff), sized from the model's config (as in
# it_distill_lora.sh): A on a self-attention q, B on an FFN
PYTHONPATH="$root/tests/tools" PYTHONDONTWRITEBYTECODE=1 \
  python3 - "$T/m/low_noise_model/config.json" "$T" <<'PY'
import json, sys
from lora_files import ramp, write
cfg = json.load(open(sys.argv[1]))
D, Fd = cfg["dim"], cfg["ffn_dim"]
p = "diffusion_model.blocks.0."
a = {p + "self_attn.q.lora_down.weight": ("F32", [4, D], ramp(4 * D, 7)),
     p + "self_attn.q.lora_up.weight": ("F32", [D, 4], ramp(4 * D, 5)),
     p + "self_attn.q.alpha": ("I64", [], [8])}
write(sys.argv[2] + "/cat/A.safetensors", a)
write(sys.argv[2] + "/merged/A.safetensors", a)
write(sys.argv[2] + "/cat/B.safetensors", {
    p + "ffn.0.lora_down.weight": ("F32", [4, D], ramp(4 * D, 3)),
    p + "ffn.0.lora_up.weight": ("F32", [Fd, 4], ramp(4 * Fd, 11))})
PY
[ -f "$T/cat/B.safetensors" ] || { fail write_adapters; exit 1; }

# low-0: the catalog; low-1 (added with its own flags): A merged at 0.7, no catalog
if ! "$LC" up --model "$T/m" --low-flags "--lora-catalog $T/cat" \
  --router-flags "--http-listen 127.0.0.1:0" > "$T/up.log" 2>&1 ||
  ! "$LC" add low --flags "--lora $T/merged/A.safetensors:0.7" > "$T/add.log" 2>&1; then
  fail cluster_up "$(tail -n 5 "$T/up.log" "$T/add.log")"
  exit 1
fi
pass cluster_up
$bin/wanctl status > "$T/status.out" 2>&1
cat_id=$(awk '$1 == "expert-low" && $2 ~ /^expert-low-0-/ {print $2}' "$T/status.out")
mer_id=$(awk '$1 == "expert-low" && $2 ~ /^expert-low-1-/ {print $2}' "$T/status.out")
check status_lists_both_low_replicas test -n "$cat_id" -a -n "$mer_id"
check status_shows_merged_adapter grep -q 'merged: A:0.7 (serves requests naming A on version v1)' "$T/status.out"
check status_shows_catalog grep -q 'catalog: A,B' "$T/status.out"

G="$bin/wanctl generate --size 64x64 --frames 9 --seed 5 --prompt a-fox --solver euler_distill"
# the replicas of the low steps of one run, space-separated
low_replicas() { awk '/^step / && $4 ~ /low/ {sub(/.*replica=/, ""); print $1}' "$1" | sort -u | tr '\n' ' '; }
$G --adapter-low A:0.7 --out "$T/a.mp4" --latent-out "$T/a.st" > /dev/null 2> "$T/a.err"
check merged_adapter_request_runs test -s "$T/a.st"
check adapter_A_goes_to_the_merged_replica test "$(low_replicas "$T/a.err")" = "$mer_id "
$G --local --model "$T/m" --lora-low "$T/merged/A.safetensors:0.7" --out "$T/al.mp4" \
  --latent-out "$T/al.st" > /dev/null 2>&1
# bit for bit: the adapter is applied once, by the merge (sent without the field)
check merged_route_bit_identical_to_local_merge cmp -s "$T/a.st" "$T/al.st"
$G --adapter-low B --out "$T/b.mp4" > /dev/null 2> "$T/b.err"
check adapter_B_goes_to_the_catalog_replica test "$(low_replicas "$T/b.err")" = "$cat_id "
$G --adapter-low A:0.5 --out "$T/a5.mp4" > /dev/null 2> "$T/a5.err"
check other_strength_goes_to_the_catalog_replica test "$(low_replicas "$T/a5.err")" = "$cat_id "
$G --out "$T/n.mp4" > /dev/null 2> "$T/n.err"
check no_adapter_request_runs grep -q '^step 4/4' "$T/n.err"

# the same under a rollout policy: stable v1 is the catalog replica's version and the merged
# replica's merged_base
check rollout_set_stable_v1 \
  bash -c "'$bin/wanctl' rollout set expert-low --stable v1 --canary v1 --percent 0 > '$T/ro.out' 2>&1"
$G --adapter-low A:0.7 --out "$T/ar.mp4" > /dev/null 2> "$T/ar.err"
check rollout_stable_v1_A_goes_to_the_merged_replica test "$(low_replicas "$T/ar.err")" = "$mer_id "
$G --adapter-low B --out "$T/br.mp4" > /dev/null 2> "$T/br.err"
check rollout_stable_v1_B_goes_to_the_catalog_replica test "$(low_replicas "$T/br.err")" = "$cat_id "
$bin/wanctl rollout clear expert-low > /dev/null 2>&1

$G --adapter-low nosuch --quiet --out "$T/x.mp4" > /dev/null 2> "$T/x.err"
check unknown_adapter_invalid_argument_naming_it_and_the_role \
  grep -q "INVALID_ARGUMENT.*expert-low.*nosuch" "$T/x.err"
# refused before it is accepted, so over HTTP it is a 400 naming it, not a failed job
H=$("$LC" status | sed -n 's/^http: //p')
code=$(curl -s -o "$T/x.json" -w '%{http_code}' -X POST "http://$H/v1/videos" \
  -H 'Content-Type: application/json' \
  -d '{"prompt": "a-fox", "size": "64x64", "frames": 9, "adapter_low": "nosuch"}')
check http_unknown_adapter_is_400_naming_it bash -c "[ '$code' = 400 ] && grep -q nosuch '$T/x.json'"
