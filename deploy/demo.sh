#!/usr/bin/env bash
# The main job (`make demo`): a local cluster — etcd, encoder, router, high- and low-noise
# experts, decoder, each its own process talking gRPC — generating one T2V and one I2V video
# with the built-in tiny model. Prints where the videos are and how long each part took.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
export BUILD
bin="$root/$BUILD/bin"
out="$root/demo-out"
export WANSERVE_HOME="${WANSERVE_HOME:-$out/home}"
mkdir -p "$out"
LC="$root/deploy/local-cluster"
trap '"$LC" down > /dev/null 2>&1 || true' EXIT
t0=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

echo "== wanserve demo: tiny Wan2.2 model, real etcd + gRPC cluster on 127.0.0.1"
"$bin/wanctl" make-tiny-model "$out/tiny-t2v" --seed 1 > /dev/null
"$bin/wanctl" make-tiny-model "$out/tiny-i2v" --seed 1 --i2v > /dev/null

t=$(date +%s.%N)
"$LC" up --model "$out/tiny-t2v" --high 1 --low 1
echo "cluster up in $(secs "$t") s"
t=$(date +%s.%N)
"$bin/wanctl" generate --task t2v --prompt "A red fox walks through a snowy forest, cinematic" \
  --size 128x128 --frames 17 --steps 20 --seed 42 --out "$out/t2v.mp4"
echo "T2V: $out/t2v.mp4 in $(secs "$t") s"
"$LC" down > /dev/null

t=$(date +%s.%N)
"$LC" up --model "$out/tiny-i2v" --high 1 --low 1 > /dev/null
"$bin/wanctl" generate --task i2v --image "$root/deploy/assets/demo.png" \
  --prompt "The picture comes to life" --size 128x128 --frames 17 --steps 20 --seed 42 \
  --out "$out/i2v.mp4"
echo "I2V: $out/i2v.mp4 in $(secs "$t") s (cluster start included)"
"$LC" down > /dev/null
trap - EXIT
if command -v ffprobe > /dev/null; then
  for f in t2v i2v; do
    echo "$f.mp4: $(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=codec_name,width,height,nb_read_frames -of csv=p=0 "$out/$f.mp4") (codec,width,height,frames)"
  done
fi
echo "demo done in $(secs "$t0") s; videos: $out/t2v.mp4 $out/i2v.mp4"
echo "Real checkpoints: deploy/local-cluster up --model /path/to/Wan2.2-T2V-A14B (see README)."
