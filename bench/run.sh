#!/usr/bin/env bash
# make bench: CPU benchmarks, written as tables to bench/RESULTS-cpu.md (GPU results of the
# CUDA backend live in bench/RESULTS.md, produced on the device machine by bench/run_device.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
out=bench/RESULTS-cpu.md
tmp=$(mktemp -d)
trap 'kill $epid ${bpid:-} 2>/dev/null || true; rm -rf "$tmp"' EXIT
epid=""
{
  echo "# CPU benchmarks"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)."
  echo "OpenBLAS sgemm, fp32. Batch 2 = cond + uncond, as the experts run it."
  echo
  echo "## DiT forward (CPU backend)"
  echo
  "$BUILD/bench/dit_cpu" ${BENCH_QUICK:+--quick} 2> "$tmp/dit.log"
  echo
  echo "## Cluster overhead per denoising step (480p latent)"
  echo
  echo "A 1-layer, dim-16 DiT keeps the compute short; the expert reports its compute time, so"
  echo "overhead = round trip - compute (serialisation, gRPC, queueing), plus the router's sampler step."
  echo "Against a measured GPU step (A14B expert, 480p, batch 2 on an H100: 6.26 s, bench/RESULTS.md)"
  echo "an overhead of ~50 ms is under 1% of a step."
  echo
  echo "| latent | in-process forward ms | Denoise round trip ms | expert compute ms | RPC overhead ms | router sampler step ms | total overhead ms |"
  echo "|---|---|---|---|---|---|---|"
} > "$out.tmp"
# a small DiT written with the tiny-model writer (config via a tiny JSON edit)
"$BUILD/bin/wanctl" make-tiny-model "$tmp/m" --dim 16 --heads 2 --layers 1 --ffn 32 > /dev/null
"$BUILD/bin/wan-expert" --role high --model "$tmp/m" --addr-file "$tmp/addr" --log-level warn &
epid=$!
for _ in $(seq 300); do [ -s "$tmp/addr" ] && break; sleep 0.1; done
"$BUILD/bench/cluster_step" "$(cat "$tmp/addr")" "$tmp/m/high_noise_model" "${BENCH_REPS:-2}" >> "$out.tmp"
{
  echo
  echo "## VAE decode (tiny VAE of make-tiny-model, streaming decoder, one process per row)"
  echo
  echo "Peak RSS counts the whole process (model, latent, one chunk of activations); the growth"
  echo "column is what the decode added. Flat growth as frames grow = memory bounded by the chunk."
  echo
  echo "| frames | latent | video | time | per frame | peak RSS | growth during decode |"
  echo "|---|---|---|---|---|---|---|"
  for t in 3 21; do "$BUILD/bench/vae_cpu" "$tmp/m" "$t" 32 32; done
} >> "$out.tmp"
# step-level batching: one expert, 4 concurrent clients, --max-batch 1/2/4 (bench/batching.c)
{
  echo
  echo "## Step-level batching in the expert (CPU)"
  echo
  echo "One wan-expert (make-tiny-model --dim 128 --heads 2 --layers 2 --ffn 256), 4 clients sending"
  echo "Denoise calls back to back (contexts cached by id, as the router does), --max-delay-ms 5."
  echo "Batched results equal unbatched ones bit for bit (tests/test_expert_batching.c). The 2-core"
  echo "machine is shared, so differences under ~10% are noise. On the CPU no gain is expected:"
  echo "GEMMs already have thousands of rows, attention is per sample, and the small latent is"
  echo "RPC-bound; batching is for the GPU (bench/RESULTS.md)."
  echo
  echo "| resolution | max-batch | latent | tokens | clients | steps/s | mean latency ms |"
  echo "|---|---|---|---|---|---|---|"
  "$BUILD/bin/wanctl" make-tiny-model "$tmp/b" --dim 128 --heads 2 --layers 2 --ffn 256 > /dev/null
  for mb in 1 2 4; do
    rm -f "$tmp/baddr"
    "$BUILD/bin/wan-expert" --role high --model "$tmp/b" --addr-file "$tmp/baddr" --max-batch "$mb" \
      --max-delay-ms 5 --log-level warn &
    bpid=$!
    for _ in $(seq 300); do [ -s "$tmp/baddr" ] && break; sleep 0.1; done
    "$BUILD/bench/batching" "$(cat "$tmp/baddr")" 32 32 3 8 8 4 64 "64x64x9 (small)" "$mb"
    "$BUILD/bench/batching" "$(cat "$tmp/baddr")" 32 32 3 24 40 4 "$([ -n "${BENCH_QUICK:-}" ] && echo 8 || echo 16)" \
      "320x192x9 (large)" "$mb"
    kill "$bpid"; wait "$bpid" 2>/dev/null || true
  done
} >> "$out.tmp"
mv "$out.tmp" "$out"
cat "$out"
echo "(per-op profile of the DiT runs: $tmp/dit.log is printed below)"
cat "$tmp/dit.log"
