#!/usr/bin/env bash
# Device run of bench/pools_gpu on nvidia-h200-x2 (issue 10, item 3): carry
# [.dev/bin/pools_gpu, .dev/pool_libs.tar.xz] (libraries the binary needs, from `ldd`, minus
# glibc and CUDA). Writes the table row to $OUT/pools.md.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/wl
tar xJf .dev/pool_libs.tar.xz -C /tmp/wl --strip-components=1
pylib() { python3 -c "import importlib,sys; m=importlib.import_module(sys.argv[1]); print(list(m.__path__)[0] + '/lib')" "$1" 2>/dev/null; }
export LD_LIBRARY_PATH=/tmp/wl:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0 WANSERVE_CUDA_PRECISION=bf16
nvidia-smi --query-gpu=index,name --format=csv | tee "$OUT/device.txt"
.dev/bin/pools_gpu "${LAYERS:-4}" "${REQUESTS:-4}" 21 60 104 2>&1 | tee "$OUT/pools.md"
