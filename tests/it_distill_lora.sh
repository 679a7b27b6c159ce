#!/usr/bin/env bash
# Black-box test of the distilled schedule with a LoRA per expert: a cluster whose high-noise
# expert merges one adapter and whose low-noise expert merges another (wan-expert --lora) makes
# the same latent, bit for bit, as `wanctl generate --local` with the same files and seed
# (--lora-high/--lora-low); the experts advertise versions with the adapter digest; the steps
# follow euler_distill (4 steps, 2 high + 2 low, fractional timesteps); a bad step list is
# INVALID_ARGUMENT naming the field. Then per-request adapters: a low-noise expert with a
# --lora-catalog answers a request naming an adapter (applied unmerged) within float rounding of
# merging the same file at load, and an unknown name is INVALID_ARGUMENT naming it.
# Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"

$bin/wanctl make-tiny-model "$T/m" > /dev/null || { fail make_tiny_model; exit 1; }
# two adapters in the published layout, sized from the model's own config (pure Python, no
# numpy): a rank-4 pair with int64 alpha on a self-attention q, a pair on an FFN and a .diff
PYTHONPATH="$root/tests/tools" PYTHONDONTWRITEBYTECODE=1 \
  python3 - "$T/m/high_noise_model/config.json" "$T" <<'PY'
import json, sys
from lora_files import ramp, write
cfg = json.load(open(sys.argv[1]))
D, Fd = cfg["dim"], cfg["ffn_dim"]
p = "diffusion_model.blocks.0."
write(sys.argv[2] + "/high.safetensors", {
    p + "self_attn.q.lora_down.weight": ("F32", [4, D], ramp(4 * D, 7)),
    p + "self_attn.q.lora_up.weight": ("F32", [D, 4], ramp(4 * D, 5)),
    p + "self_attn.q.alpha": ("I64", [], [8])})
write(sys.argv[2] + "/low.safetensors", {
    p + "ffn.0.lora_down.weight": ("F32", [4, D], ramp(4 * D, 3)),
    p + "ffn.0.lora_up.weight": ("F32", [Fd, 4], ramp(4 * Fd, 11)),
    p + "norm3.diff": ("F32", [D], ramp(D, 13))})
PY
[ -f "$T/low.safetensors" ] || { fail write_adapters; exit 1; }

if ! "$LC" up --model "$T/m" --high-flags "--lora $T/high.safetensors:0.8" \
    --low-flags "--lora $T/low.safetensors" > "$T/up.log" 2>&1; then
  fail cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass cluster_up

G="$bin/wanctl generate --size 64x64 --frames 9 --seed 11 --prompt a-fox --solver euler_distill"
$G --local --model "$T/m" --lora-high "$T/high.safetensors:0.8" --lora-low "$T/low.safetensors" \
  --out "$T/l.mp4" --latent-out "$T/l.st" > /dev/null 2> "$T/l.err"
check local_distill_lora_runs test -s "$T/l.st"
$G --out "$T/c.mp4" --latent-out "$T/c.st" > /dev/null 2> "$T/c.err"
check cluster_latent_bit_identical_to_local cmp -s "$T/l.st" "$T/c.st"
# without the adapters the result differs (the experts really merged them)
$G --local --model "$T/m" --out "$T/n.mp4" --latent-out "$T/n.st" > /dev/null 2>&1
check adapters_change_the_latent bash -c "! cmp -s '$T/l.st' '$T/n.st'"
check four_steps test "$(grep -c '^step ' "$T/c.err")" -eq 4
check two_high_then_two_low test "$(awk '/^step /{printf "%s", ($4 ~ /high/) ? "H" : "L"}' "$T/c.err")" = HHLL
check versions_carry_the_adapter_digest grep -q 'version=v1+lora-[0-9a-f]\{16\}' "$T/c.err"
hv=$(awk '/^step 1\//{sub(/.*version=/, ""); print $1}' "$T/c.err")
lv=$(awk '/^step 4\//{sub(/.*version=/, ""); print $1}' "$T/c.err")
check high_and_low_versions_differ test -n "$hv" -a "$hv" != "$lv"

$bin/wanctl generate --size 64x64 --frames 9 --prompt x --solver euler_distill \
  --step-list 1000,1000 --quiet --out "$T/bad.mp4" > /dev/null 2> "$T/bad.err"
check bad_step_list_names_the_field grep -q "INVALID_ARGUMENT.*denoising_step_list" "$T/bad.err"

# --- per-request adapters: the low-noise expert holds a catalog; a request naming an adapter
# gets it applied unmerged, equal (to float rounding) to merging the same file at load
"$LC" down > /dev/null
mkdir -p "$T/cat"
python3 - "$T/low.safetensors" "$T/cat/style.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
hdr = json.loads(b[8:8 + n]); data = b[8 + n:]
out, blobs, off = {}, [], 0
for k, v in hdr.items():
    if k == "__metadata__" or k.endswith(".diff"): continue  # pairs only: deltas cannot go unmerged
    s, e = v["data_offsets"]; blob = data[s:e]
    out[k] = dict(v, data_offsets=[off, off + len(blob)]); blobs.append(blob); off += len(blob)
h = json.dumps(out).encode(); h += b" " * ((8 - len(h) % 8) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
PY
if ! "$LC" up --model "$T/m" --low-flags "--lora-catalog $T/cat" \
    --router-flags "--http-listen 127.0.0.1:0" > "$T/up2.log" 2>&1; then
  fail catalog_cluster_up "$(tail -n 5 "$T/up2.log")"
  exit 1
fi
$G --local --model "$T/m" --lora-low "$T/cat/style.safetensors:0.6" --out "$T/lm.mp4" \
  --latent-out "$T/lm.st" > /dev/null 2>&1
$G --adapter-low style:0.6 --out "$T/lc.mp4" --latent-out "$T/lc.st" > /dev/null 2> "$T/lc.err"
$G --out "$T/l0.mp4" --latent-out "$T/l0.st" > /dev/null 2>&1
rel() { # rel-L2 of two single-tensor F32 safetensors files
  python3 - "$1" "$2" <<'PY'
import json, math, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    h = {k: v for k, v in json.loads(b[8:8 + n]).items() if k != "__metadata__"}
    v = next(iter(h.values())); s, e = v["data_offsets"]
    return struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
a, r = load(sys.argv[1]), load(sys.argv[2])
print("%.3e" % (math.sqrt(sum((x - y) ** 2 for x, y in zip(a, r))) / math.sqrt(sum(y * y for y in r))))
PY
}
r=$(rel "$T/lc.st" "$T/lm.st"); r0=$(rel "$T/l0.st" "$T/lm.st")
echo "  unmerged vs merged rel-L2 $r (no adapter: $r0)"
check unmerged_request_adapter_equals_merged awk -v r="$r" 'BEGIN { exit !(r <= 1e-4) }'
check request_adapter_changes_the_latent awk -v r="$r0" -v e="$r" 'BEGIN { exit !(r > 100 * e) }'
$G --adapter-low nosuch --quiet --out "$T/bad2.mp4" > /dev/null 2> "$T/bad2.err"
check unknown_adapter_invalid_argument_naming_it grep -q "INVALID_ARGUMENT.*nosuch" "$T/bad2.err"

# --- the same over HTTP: a distilled job naming the catalog adapter completes, echoes its fields
H=$("$LC" status | sed -n 's/^http: //p')
python3 - "$H" > "$T/http.out" 2>&1 <<'PY'
import json, sys, time, urllib.request
h = sys.argv[1] if "://" in sys.argv[1] else "http://" + sys.argv[1]
body = {"prompt": "a-fox", "size": "64x64", "frames": 9, "seed": 11, "solver": "euler_distill",
        "denoising_step_list": [1000, 750, 500, 250], "adapter_low": "style",
        "adapter_low_strength": 0.6}
req = urllib.request.Request(h + "/v1/videos", json.dumps(body).encode(),
                             {"Content-Type": "application/json"})
job = json.load(urllib.request.urlopen(req))
for _ in range(600):
    job = json.load(urllib.request.urlopen(h + "/v1/videos/" + job["id"]))
    if job["status"] in ("completed", "failed", "cancelled"): break
    time.sleep(0.1)
ok = (job["status"] == "completed" and job.get("solver") == "euler_distill" and
      job.get("denoising_step_list") == [1000, 750, 500, 250] and
      job.get("adapter_low") == "style" and abs(job.get("adapter_low_strength", 0) - 0.6) < 1e-6
      and job.get("total") == 4)
print("OK" if ok else "BAD " + json.dumps(job))
PY
if grep -q '^OK' "$T/http.out"; then pass http_distill_job_with_request_adapter
else fail http_distill_job_with_request_adapter "$(tail -c 600 "$T/http.out")"; fi
