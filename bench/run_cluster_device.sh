#!/usr/bin/env bash
# Runs on the device machine (three calls in a row: `libs1`, `libs2`, then no argument): a local cluster (etcd, CPU encoder/decoder/router, CUDA experts)
# generating a tiny video, then the same request in process on the CUDA backend and on the CPU,
# comparing the final latents. Logs and the MP4 go to $OUT.
set -u
OUT=${OUT:-/tmp/out}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p "$OUT" .dev/run /tmp/wl
case ${1:-} in # libs1, libs2: unpack the libraries; they stay while the machine is warm
  libs1 | libs2) tar -xJf ".dev/cluster-${1}.tar.xz" -C /tmp/wl && ls /tmp/wl/lib | wc -l; exit ;;
esac
[ -d /tmp/wl/lib ] || { echo "run 'bench/run_cluster_device.sh libs' first (same warm machine)"; exit 1; }
tar -xJf .dev/cluster-bin.tar.xz -C .dev/run
ln -sfn /tmp/wl/lib .dev/run/lib
pylib() { python3 -c "import importlib,sys; m=importlib.import_module(sys.argv[1]); print(list(m.__path__)[0] + '/lib')" "$1" 2>/dev/null; }
export LD_LIBRARY_PATH="$root/.dev/run/lib:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$root/.dev/run/bin:$PATH" BUILD=.dev/run WANSERVE_HOME=/tmp/wshome NCCL_NVLS_ENABLE=0
bin=.dev/run/bin
nvidia-smi -L | tee "$OUT/device.txt"
for b in wan-expert wan-router wanctl; do ldd "$bin/$b" | grep "not found" | tee -a "$OUT/device.txt"; done
"$bin/wanctl" make-tiny-model /tmp/tiny > /dev/null
deploy/local-cluster up --model /tmp/tiny --backend cuda --high 1 --low 1 2>&1 | tee "$OUT/up.txt"
"$bin/wanctl" status 2>&1 | tee "$OUT/status.txt"
A="--size 128x128 --frames 17 --steps 20 --seed 42 --prompt 'A red fox walks through snow'"
eval "$bin/wanctl generate $A --out $OUT/cluster_cuda.mp4 --latent-out $OUT/cluster_cuda.st" 2>&1 | tail -n 25 | tee "$OUT/generate.txt"
grep -h "backend\|cuda" /tmp/wshome/local-cluster/logs/high-0.log | head -n 5 | tee -a "$OUT/generate.txt"
deploy/local-cluster down | tee -a "$OUT/generate.txt"
eval "$bin/wanctl generate $A --local --model /tmp/tiny --backend cuda --quiet --out $OUT/local_cuda.mp4 --latent-out $OUT/local_cuda.st" 2>&1 | tee -a "$OUT/generate.txt"
eval "$bin/wanctl generate $A --local --model /tmp/tiny --backend cpu --quiet --out $OUT/local_cpu.mp4 --latent-out $OUT/local_cpu.st" 2>&1 | tee -a "$OUT/generate.txt"
cmp "$OUT/cluster_cuda.st" "$OUT/local_cuda.st" && echo "cluster (CUDA experts) latent == local CUDA latent: bit-identical" | tee -a "$OUT/generate.txt"
cp /tmp/wshome/local-cluster/logs/*.log "$OUT/" 2> /dev/null
tar -czf "$OUT/logs.tgz" -C /tmp/wshome/local-cluster logs 2> /dev/null
rm -f "$OUT"/*.log
python3 - "$OUT" <<'PY' 2>&1 | tee -a "$OUT/generate.txt"
import sys, numpy as np
from safetensors.numpy import load_file
o = sys.argv[1]
a = load_file(o + "/cluster_cuda.st")["latent"].astype(np.float64)
for other in ("local_cuda", "local_cpu"):
    b = load_file(o + "/" + other + ".st")["latent"].astype(np.float64)
    print("rel-L2 cluster_cuda vs %s: %.3e" % (other, np.linalg.norm(a - b) / np.linalg.norm(b)))
PY
ls -la "$OUT"
