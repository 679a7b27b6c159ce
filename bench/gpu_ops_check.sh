#!/usr/bin/env bash
# gpu_ops_check.sh — the CUDA backend's op tests (tests/test_cuda_ops: the DiT ops;
# tests/test_cuda_vae_ops: the VAE/umT5 ops of issue 14) against the CPU backend, on the device.
#
#   bash bench/gpu_ops_check.sh pack   on a development machine (nvcc, no GPU): builds both test
#                                      binaries and bench/conv_gpu into build-cuda/ and packs the
#                                      shared libraries the device lacks into .dev/ops_libs.tar.xz
#   bash bench/gpu_ops_check.sh run    on the device: runs both, prints one PASS/FAIL line per
#                                      test and a final "gpu ops check: PASS|FAIL"; exit 0 on PASS
#   bash bench/gpu_ops_check.sh bench  on the device: bench/conv_gpu at 480p and 720p (conv3d at
#                                      the VAE's shapes in TF32, bf16, fp32 and im2col; ~1 min),
#                                      tables also in $OUT/conv_gpu.md
#
# The device call (the checkout travels; the ignored build outputs are carried):
#   run(command="bash bench/gpu_ops_check.sh run", timeout_s=560,
#       carry=["build-cuda/tests/test_cuda_ops", "build-cuda/tests/test_cuda_vae_ops",
#              "build-cuda/bench/conv_gpu", ".dev/ops_libs.tar.xz"])
# (command="bash bench/gpu_ops_check.sh run; bash bench/gpu_ops_check.sh bench" does both.)
# cuDNN (libcudnn.so.9, dlopen'ed by the backend) and cuBLAS come from the device's PyTorch
# installation (python3's nvidia.cudnn / nvidia.cublas packages), as in bench/run_device.sh.
# Logs go to $OUT (the device tool brings them back): test_cuda_ops.log, test_cuda_vae_ops.log,
# device.txt.
set -u
cd "$(dirname "$0")/.."
B=build-cuda
TESTS="test_cuda_ops test_cuda_vae_ops"

phase=${1:-run}
case $phase in
pack)
  set -e
  make BUILD=$B $B/tests/test_cuda_ops $B/tests/test_cuda_vae_ops $B/bench/conv_gpu -j2
  rm -rf .dev/ops_lib && mkdir -p .dev/ops_lib
  # everything the binaries link that is neither libc nor the CUDA toolkit's (the device has the
  # toolkit; the package libraries of this machine — OpenBLAS, cJSON, ffmpeg, ... — it lacks)
  for t in $TESTS; do ldd "$B/tests/$t"; done | cat - <(ldd $B/bench/conv_gpu) | awk '{print $3}' |
    grep -v -E '^$|/libc\.so|/libm\.so|libpthread|/libdl\.so|/librt\.so|ld-linux|/usr/local/cuda' |
    sort -u | while read -r l; do cp -L "$l" .dev/ops_lib/; done
  (cd .dev && tar cf - ops_lib | xz -T2 -6 >ops_libs.tar.xz)
  ls -la $B/tests/test_cuda_ops $B/tests/test_cuda_vae_ops $B/bench/conv_gpu .dev/ops_libs.tar.xz
  ;;
run | bench)
  OUT=${OUT:-/tmp/out}
  mkdir -p "$OUT" /tmp/ops_lib
  [ -f .dev/ops_libs.tar.xz ] && tar xJf .dev/ops_libs.tar.xz -C /tmp/ops_lib --strip-components=1
  pylib() { python3 -c "import importlib,sys; m=importlib.import_module(sys.argv[1]); print(list(m.__path__)[0] + '/lib')" "$1" 2>/dev/null; }
  CUDNN_LIB=$(pylib nvidia.cudnn)
  CUBLAS_LIB=$(pylib nvidia.cublas)
  export LD_LIBRARY_PATH=/tmp/ops_lib:${CUDNN_LIB}:${CUBLAS_LIB}:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u
    echo "cudnn: $CUDNN_LIB ($(ls "$CUDNN_LIB"/libcudnn.so.9 2>&1))  cublas: $CUBLAS_LIB"
    for t in $TESTS; do ldd "$B/tests/$t" | grep -E "not found|cublas" | sort -u; done
  } 2>&1 | tee "$OUT/device.txt"
  if [ "$phase" = bench ]; then
    rc=0
    for r in 480 720; do
      timeout 200 $B/bench/conv_gpu --res $r --reps 5 --md "$OUT/conv_gpu.md" || rc=1
    done
    exit $rc
  fi
  status=PASS
  for t in $TESTS; do
    if [ ! -x "$B/tests/$t" ]; then
      echo "FAIL $t: $B/tests/$t missing (run 'pack' and carry it)"
      status=FAIL
      continue
    fi
    echo "== $t"
    # test_cuda_vae_ops builds cuDNN plans for ~60 convolution shapes (first calls can JIT)
    lim=150; [ $t = test_cuda_vae_ops ] && lim=380
    timeout $lim "$B/tests/$t" >"$OUT/$t.log" 2>&1
    rc=$?
    echo "rc=$rc" >>"$OUT/$t.log"
    grep -E "^(PASS|FAIL|SKIP)" "$OUT/$t.log"
    # failing checks print their rel_l2 and seed; the backends describe their paths at the end
    grep -E "rel_l2 .* > |first difference|^(auto|fp32|im2col|chunk|bf16): " "$OUT/$t.log"
    if [ $rc -ne 0 ] || grep -q "^SKIP" "$OUT/$t.log"; then status=FAIL; fi
  done
  echo "gpu ops check: $status"
  [ $status = PASS ]
  ;;
*)
  echo "usage: $0 pack|run" >&2
  exit 2
  ;;
esac
