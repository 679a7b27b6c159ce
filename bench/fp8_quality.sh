#!/usr/bin/env bash
# fp8_quality.sh — issue 20's quality numbers for the FP8 policy on the built-in tiny model (CPU,
# the reference arithmetic): one 40-step T2V request (64x64, 9 frames, UniPC, CFG)
#   1. per-step prediction rel-L2 against bf16 for each expert: a local cluster with an FP8
#      replica of each role in shadow at 100 % (`wanctl rollout status`);
#   2. final-latent rel-L2 and decoded-frame PSNR: `wanctl generate --local --precision fp8`
#      against the same request in bf16 (float32 on the CPU).
# Usage: bash bench/fp8_quality.sh   (after `make`; prints a Markdown table)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
export PATH="$root/$BUILD/bin:$PATH" WANSERVE_HOME=${WANSERVE_HOME:-$(mktemp -d)}
W=$(mktemp -d)
trap 'deploy/local-cluster down > /dev/null 2>&1 || true; rm -rf "$W"' EXIT
req=(--prompt "a red fox walks through snow" --size 64x64 --frames 9 --steps 40 --seed 7 --quiet)

wanctl make-tiny-model "$W/m" > /dev/null
for p in bf16 fp8; do
  wanctl generate --local --model "$W/m" --precision $p "${req[@]}" --out "$W/$p.mp4" \
    --latent-out "$W/$p.st"
done
rel=$(/usr/bin/python3 - "$W/bf16.st" "$W/fp8.st" <<'PY'
import json, math, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    for k, v in sorted(h.items()):
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        yield k, struct.unpack("<%df" % (len(raw) // 4), raw)
a, b = dict(tensors(sys.argv[1])), dict(tensors(sys.argv[2]))
num = sum((x - y) ** 2 for k in a for x, y in zip(b[k], a[k]))
den = sum(x * x for k in a for x in a[k])
print("%.3e" % math.sqrt(num / den))
PY
)
psnr=$(ffmpeg -hide_banner -nostats -i "$W/bf16.mp4" -i "$W/fp8.mp4" -lavfi psnr -f null - 2>&1 |
  sed -n 's/.*average:\([0-9.inf]*\).*/\1/p' | tail -n 1)

deploy/local-cluster up --high 1 --low 1 --router-flags "--stats-interval-ms 500" > /dev/null
deploy/local-cluster add high --version v1-fp8 --flags "--precision fp8" > /dev/null
deploy/local-cluster add low --version v1-fp8 --flags "--precision fp8" > /dev/null
for _ in $(seq 100); do [ "$(wanctl status | grep -c ' v1-fp8 ')" -ge 2 ] && break; sleep 0.1; done
for r in expert-high expert-low; do
  wanctl rollout set $r --stable v1 --canary v1-fp8 --mode shadow --percent 100 > /dev/null
done
sleep 0.5
wanctl generate "${req[@]}" --out "$W/cluster.mp4"
sleep 1.2
echo "| expert | shadowed steps | per-step rel-L2 mean | p99 (bucket bound) | max |"
echo "|---|---|---|---|---|"
for r in expert-high expert-low; do
  wanctl rollout status $r > "$W/$r.txt" || true
  count=$(sed -n 's/^ *count \([0-9]*\).*/\1/p' "$W/$r.txt")
  read -r mean p99 max < <(sed -n 's/.*mean \([0-9.e-]*\).*p99 \([0-9.e-]*\).*max \([0-9.e-]*\).*/\1 \2 \3/p' "$W/$r.txt")
  echo "| $r | $count | $mean | $p99 | $max |"
done
echo
echo "final latent rel-L2 fp8 vs bf16 (40 steps, --local): $rel; decoded frames PSNR: $psnr dB"
