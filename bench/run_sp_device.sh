#!/usr/bin/env bash
# run_sp_device.sh — issue 10 (Ulysses sequence parallelism over NCCL) on a multi-GPU device.
#
#   bash bench/run_sp_device.sh pack     on the development machine (nvcc, no GPU): builds
#                                        $B/bench/dit_sp_gpu (B=build-sp) and packs the shared
#                                        libraries the device lacks into .dev/sp_libs.tar.xz
#                                        (the approach of bench/pack_device.sh)
#   bash bench/run_sp_device.sh run      on the device (nvidia-h200-x2), carrying
#                                        [build-sp/bench/dit_sp_gpu, .dev/sp_libs.tar.xz]:
#     1. 2 ranks (one process per GPU, rendezvous through a file): small-model check, then the
#        A14B 720p benchmark (1 GPU vs 2 GPUs, all-to-all share) -> $OUT/sp.md, $OUT/rank*.log
#     2. a rank that never arrives: rank 0 alone in a world of 2 must fail with a timeout
#     3. a rank that dies mid-forward (_exit in its 5th all-to-all): rank 0 must fail, not hang
# NCCL and cuBLAS/cuDNN come from the device's Python packages or CUDA toolkit. NVLink
# multicast stays off (NCCL_NVLS_ENABLE=0), as the device rules require.
set -u
cd "$(dirname "$0")/.."
B=${B:-build-sp}
BIN=$B/bench/dit_sp_gpu
case ${1:-run} in
pack)
  set -e
  make BUILD=$B $BIN -j2
  rm -rf .dev/splib && mkdir -p .dev/splib
  ldd "$BIN" | awk '{print $3}' |
    grep -v -E '^$|/libc\.so|/libm\.so|libpthread|/libdl\.so|/librt\.so|ld-linux|/usr/local/cuda' |
    sort -u | while read -r l; do cp -L "$l" .dev/splib/; done
  (cd .dev && tar cf - splib | xz -T2 -6 >sp_libs.tar.xz)
  ls -la "$BIN" .dev/sp_libs.tar.xz
  ;;
run)
  OUT=${OUT:-/tmp/out}
  mkdir -p "$OUT" /tmp/wl
  tar xJf .dev/sp_libs.tar.xz -C /tmp/wl --strip-components=1
  pylib() { python3 -c "import importlib,sys; m=importlib.import_module(sys.argv[1]); print(list(m.__path__)[0] + '/lib')" "$1" 2>/dev/null; }
  export LD_LIBRARY_PATH=/tmp/wl:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):$(pylib nvidia.nccl):/usr/local/cuda/lib64:/usr/local/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
  { nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv; nvidia-smi topo -m; date -u; } 2>&1 | tee "$OUT/device.txt"
  ldd "$BIN" | grep -E "not found" | tee -a "$OUT/device.txt"
  LAYERS=${LAYERS:-40} RES=${RES:-720} REPS=${REPS:-2}
  echo "== 1. two ranks: check + A14B ${RES}p benchmark ($LAYERS layers)"
  id=/tmp/ncclid.1; rm -f $id
  timeout 240 $BIN --world 2 --rank 1 --id-file $id --layers $LAYERS --res $RES --reps $REPS \
    >"$OUT/rank1.log" 2>&1 &
  p1=$!
  timeout 240 $BIN --world 2 --rank 0 --id-file $id --layers $LAYERS --res $RES --reps $REPS \
    --md "$OUT/sp.md" 2>&1 | tee "$OUT/rank0.log"
  wait $p1; echo "rank 1 exit $?"; tail -3 "$OUT/rank1.log"
  echo "== 2. a rank that never arrives (world 2, rank 0 alone, timeout 15 s)"
  id=/tmp/ncclid.2; rm -f $id; t0=$(date +%s)
  timeout 60 $BIN --world 2 --rank 0 --id-file $id --skip-bench --timeout-ms 15000 >"$OUT/never.log" 2>&1
  echo "exit $? after $(( $(date +%s) - t0 )) s (want 1, ~15 s)"; grep -E "join failed|rank 0" "$OUT/never.log" | tail -2
  echo "== 3. a rank that dies in its 5th all-to-all (timeout 15 s)"
  id=/tmp/ncclid.3; rm -f $id; t0=$(date +%s)
  timeout 60 $BIN --world 2 --rank 1 --id-file $id --skip-bench --timeout-ms 15000 --die-at 5 >"$OUT/die1.log" 2>&1 &
  p1=$!
  timeout 60 $BIN --world 2 --rank 0 --id-file $id --skip-bench --timeout-ms 15000 >"$OUT/die0.log" 2>&1
  echo "rank 0 exit $? after $(( $(date +%s) - t0 )) s (want 1)"; wait $p1; echo "rank 1 exit $? (want 3)"
  tail -2 "$OUT/die0.log"; tail -1 "$OUT/die1.log"
  echo "== sp.md"; cat "$OUT/sp.md" 2>/dev/null
  ;;
*) echo "usage: $0 pack|run"; exit 2 ;;
esac
