#!/usr/bin/env bash
# run_device.sh — what the device machine runs for issue 7 (CUDA backend), by phase.
#
# The binaries are built on a development machine (nvcc there) into build-cuda/ and carried,
# with the shared libraries the device lacks packed in .dev/libs.tar.xz (see bench/RESULTS.md,
# "Reproducing"). cuDNN and cuBLAS come from the device's PyTorch installation.
#
#   bench/run_device.sh check   op tests, golden cases on --backend cuda (auto and bf16), smoke
#   bench/run_device.sh bench   bench/dit_gpu at A14B scale (40 layers, 480p/720p, B 1 and 2)
#   bench/run_device.sh torch   bench/torch_baseline.py, same shapes
# Logs go to $OUT (default /tmp/out).
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/wl
[ -f .dev/libs.tar.xz ] && tar xJf .dev/libs.tar.xz -C /tmp/wl --strip-components=1
pylib() { python3 -c "import importlib,sys; m=importlib.import_module(sys.argv[1]); print(list(m.__path__)[0] + '/lib')" "$1" 2>/dev/null; }
CUDNN_LIB=$(pylib nvidia.cudnn)
CUBLAS_LIB=$(pylib nvidia.cublas)
export LD_LIBRARY_PATH=/tmp/wl:${CUDNN_LIB}:${CUBLAS_LIB}:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
phase=${1:-check}
case $phase in
check)
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } 2>&1 | tee "$OUT/device.txt"
  echo "cudnn: $CUDNN_LIB  cublas: $CUBLAS_LIB" | tee -a "$OUT/device.txt"
  ldd build-cuda/tests/test_cuda_ops .dev/golden_cuda | grep -E "not found|cublas|cudnn" | sort -u | tee -a "$OUT/device.txt"
  echo "== test_cuda_ops"
  timeout 200 build-cuda/tests/test_cuda_ops >"$OUT/test_cuda_ops.log" 2>&1; echo "rc=$?" >>"$OUT/test_cuda_ops.log"
  grep -E "^(PASS|FAIL|SKIP)|rc=" "$OUT/test_cuda_ops.log"
  cases=$(ls -d tests/golden/dit_* tests/golden/sampler_*)
  echo "== golden, --backend cuda (precision auto)"
  timeout 90 .dev/golden_cuda --backend cuda $cases 2>&1 | tee "$OUT/golden_cuda.log"
  echo "== golden, --backend cuda, WANSERVE_CUDA_PRECISION=bf16 (bf16 GEMMs and cuDNN attention everywhere)"
  WANSERVE_CUDA_PRECISION=bf16 timeout 90 .dev/golden_cuda --backend cuda $cases 2>&1 | tee "$OUT/golden_cuda_bf16.log"
  echo "== smoke: dit_gpu 2 layers, torch 2 layers"
  timeout 90 build-cuda/bench/dit_gpu --layers 2 --res 480 --batch 1,2 --reps 1 2>&1 | tee "$OUT/smoke.log"
  timeout 90 python3 bench/torch_baseline.py --layers 2 --res 480 --batch 1 --reps 1 2>&1 | tee -a "$OUT/smoke.log"
  ;;
bench)
  timeout 580 build-cuda/bench/dit_gpu --layers "${LAYERS:-40}" --res "${RES:-480,720}" \
    --batch "${BATCH:-1,2}" --reps "${REPS:-2}" --md "$OUT/results_cuda.md" 2>&1 | tee "$OUT/dit_gpu.log"
  ;;
torch)
  timeout 580 python3 bench/torch_baseline.py --layers "${LAYERS:-40}" --res "${RES:-480,720}" \
    --batch "${BATCH:-1,2}" --reps "${REPS:-2}" --md "$OUT/results_torch.md" 2>&1 | tee "$OUT/torch.log"
  ;;
*) echo "unknown phase $phase"; exit 2 ;;
esac
