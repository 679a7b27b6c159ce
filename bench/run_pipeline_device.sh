#!/usr/bin/env bash
# run_pipeline_device.sh — the device side of issue 14 (the whole pipeline on the GPU), by phase;
# what it carries is made by bench/pack_pipeline_device.sh. Calls follow each other on one warm
# machine (/tmp/wl keeps the libraries between them):
#
#   libs1     unpack the first half of the libraries
#   check     (on its own: .dev/pipe-check.tar.xz) the op tests (test_cuda_ops, test_cuda_vae_ops),
#             the golden cases on --backend cuda (fp32 mode at the case tolerance, bf16 at 1e-2),
#             and bench/pipeline_gpu (umT5 512 tokens, I2V encode, VAE decode at 480p and 720p)
#   sweep     (on its own: .dev/pipe-check.tar.xz) the VAE's convolution modes compared: the op
#             tests, conv_gpu per shape, then per mode (TF32 folded / 3-D, bf16, fp16) the golden
#             cases in bf16 and pipeline_gpu's decode (480p, 720p) and encode (480p)
#   check2    (on its own: .dev/pipe-check.tar.xz) the op tests, conv_gpu, pipeline_gpu at 480p
#             and 720p (default, then decode in fp16/bf16 storage), the goldens, and dit_gpu
#             --fp8 (FP8 GEMMs at A14B shapes); at most 8 files back
#   check3    (on its own: .dev/pipe-check.tar.xz) the op tests, pipeline_gpu (480p, 720p, the
#             decode profile), the goldens, and dit_gpu with block offload (FP8 + 20 blocks,
#             bf16 + 30 blocks) at 480p; at most 8 files back
#   check4    (on its own) the op tests, the goldens in bf16 and fp32 mode (dit_lora merges on the
#             device now), lora_gpu (the merge on the device, the unmerged forward)
#   cluster   a local cluster with every service on the GPU serving `random:t2v-a14b` (the real
#             shapes, random weights): one 832x480, 81-frame, STEPS-step (default 40) T2V request,
#             times per stage and peak GPU memory per process; TASK=i2v serves `random:i2v-a14b`
#             and sends deploy/assets/demo.png as the first frame; PRECISION=fp8 runs the experts
#             with FP8 weights; GEN_ARGS adds wanctl generate flags
# Everything goes to $OUT.
set -u
OUT=${OUT:-/tmp/out}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p "$OUT" /tmp/wl .dev/run
pylib() { python3 -c "import importlib,sys; m=importlib.import_module(sys.argv[1]); print(list(m.__path__)[0] + '/lib')" "$1" 2>/dev/null; }
unpack() { [ -f "$1" ] && tar -xJf "$1" -C "$2"; }
env_setup() {
  export LD_LIBRARY_PATH="/tmp/wl/lib:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PATH="$root/.dev/run/bin:$PATH" BUILD=.dev/run WANSERVE_HOME=/tmp/wshome PYTHONUNBUFFERED=1
  bin="$root/.dev/run/bin"
}
phase=${1:-check}
case $phase in
libs1)
  unpack .dev/pipe-libs1.tar.xz /tmp/wl && ls /tmp/wl/lib | wc -l
  ;;
check)
  mkdir -p /tmp/chk && unpack .dev/pipe-check.tar.xz /tmp/chk
  export LD_LIBRARY_PATH="/tmp/chk/lib:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PYTHONUNBUFFERED=1
  bin=/tmp/chk/bin
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } 2>&1 | tee "$OUT/device.txt"
  ldd $bin/* | grep "not found" | sort -u | tee -a "$OUT/device.txt"
  for t in test_cuda_ops test_cuda_vae_ops; do
    [ -x "$bin/$t" ] || continue
    echo "== $t"
    timeout 90 "$bin/$t" > "$OUT/$t.log" 2>&1; echo "rc=$?" >> "$OUT/$t.log"
    grep -E "^(PASS|FAIL|SKIP)|rc=|check failed" "$OUT/$t.log" | head -n 60
  done
  echo "== golden, --backend cuda, fp32 mode (case tolerance)"
  WANSERVE_CUDA_PRECISION=fp32 timeout 50 $bin/golden_cuda --backend cuda --implemented-only tests/golden 2>&1 | tee "$OUT/golden_fp32.log" | grep -v "^ "
  echo "== golden, --backend cuda, bf16 (rel-L2 <= 1e-2)"
  WANSERVE_CUDA_PRECISION=bf16 timeout 50 $bin/golden_cuda --backend cuda --implemented-only --tolerance-floor 1e-2 tests/golden 2>&1 | tee "$OUT/golden_bf16.log" | grep -v "^ "
  echo "== pipeline_gpu --profile, 480p (op shares)"
  timeout 100 $bin/pipeline_gpu --backend cuda --what encode,decode --res 480 --reps 1 --profile 2>&1 | tee "$OUT/pipeline_profile.log"
  echo "== pipeline_gpu (random:t2v-a14b weights)"
  timeout ${PIPE_TIMEOUT:-150} $bin/pipeline_gpu --backend cuda --reps ${REPS:-1} --md "$OUT/pipeline.md" 2>&1 | tee "$OUT/pipeline.log"
  if [ -x $bin/conv_gpu ]; then
    echo "== conv_gpu 480p"
    timeout 60 $bin/conv_gpu --res 480 --reps 3 2>&1 | tee "$OUT/conv_gpu.log"
  fi
  if [ -x $bin/lora_gpu ]; then
    echo "== lora_gpu (A14B, rank 64, 480p)"
    timeout 120 $bin/lora_gpu --backend cuda --reps 2 2>&1 | tee "$OUT/lora_gpu.log"
  fi
  ;;
sweep)
  mkdir -p /tmp/chk && unpack .dev/pipe-check.tar.xz /tmp/chk
  export LD_LIBRARY_PATH="/tmp/chk/lib:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  bin=/tmp/chk/bin
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } 2>&1 | tee "$OUT/device.txt"
  for t in test_cuda_vae_ops ${EXTRA_TESTS:-}; do
    echo "== $t"
    timeout 120 "$bin/$t" > "$OUT/$t.log" 2>&1; echo "rc=$?" >> "$OUT/$t.log"
    grep -E "^(PASS|FAIL|SKIP)|rc=|check failed" "$OUT/$t.log" | head -n 40
  done
  echo "== conv_gpu 480p"
  timeout 90 $bin/conv_gpu --res 480 --reps 3 2>&1 | tee "$OUT/conv_gpu.log"
  for mode in "tf32:1" "tf32:0" "bf16:1" "fp16:1"; do
    dt=${mode%:*} fold=${mode#*:}
    echo "== mode dtype=$dt fold=$fold"
    export WANSERVE_CUDA_CONV_DTYPE=$dt WANSERVE_CUDA_CONV_FOLD=$fold
    WANSERVE_CUDA_PRECISION=bf16 timeout 50 $bin/golden_cuda --backend cuda --implemented-only --tolerance-floor 1e-2 tests/golden 2>&1 | grep -E "vae|i2v_cond" | grep -v "^ "
    timeout 100 $bin/pipeline_gpu --backend cuda --what encode,decode --res 480 --reps 1 2>&1 | tee "$OUT/pipe_$dt$fold.log" | grep -v "^#"
  done
  unset WANSERVE_CUDA_CONV_DTYPE WANSERVE_CUDA_CONV_FOLD
  echo "== default: decode and encode at 720p, the golden cases (bf16, fp32 mode)"
  timeout 100 $bin/pipeline_gpu --backend cuda --what encode,decode --res 720 --reps 1 --md "$OUT/pipeline.md" 2>&1 | grep -v "^#"
  WANSERVE_CUDA_PRECISION=bf16 timeout 50 $bin/golden_cuda --backend cuda --implemented-only --tolerance-floor 1e-2 tests/golden 2>&1 | tee "$OUT/golden_bf16.log" | grep -v "^ "
  WANSERVE_CUDA_PRECISION=fp32 timeout 50 $bin/golden_cuda --backend cuda --implemented-only tests/golden 2>&1 | tee "$OUT/golden_fp32.log" | grep -v "^ " | tail -n 4
  if [ -x $bin/dit_gpu ]; then
    echo "== dit_gpu (A14B, per-sample blocks, chunked FFN)"
    timeout 200 $bin/dit_gpu --res 480,720 --batch 1,2 --reps 1 --no-profile --md "$OUT/dit.md" 2>&1 | tee "$OUT/dit_gpu.log" | grep -v "^#" | tail -n 20
  fi
  timeout 60 $bin/pipeline_gpu --backend cuda --what decode --res 480 --reps 1 --profile 2>&1 | tail -n 30 > "$OUT/profile.log"
  ;;
check2)
  mkdir -p /tmp/chk && unpack .dev/pipe-check.tar.xz /tmp/chk
  export LD_LIBRARY_PATH="/tmp/chk/lib:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  bin=/tmp/chk/bin
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } 2>&1 | tee "$OUT/device.txt"
  for t in test_cuda_ops test_cuda_vae_ops; do
    echo "== $t"
    timeout 120 "$bin/$t" >> "$OUT/ops.log" 2>&1; echo "rc=$?" >> "$OUT/ops.log"
  done
  grep -E "^(PASS|FAIL|SKIP)|rc=|check failed|fp8" "$OUT/ops.log" | head -n 60
  echo "== conv_gpu 480p"
  timeout 90 $bin/conv_gpu --res 480 --reps 3 --md "$OUT/pipe.md" 2>&1 | grep -v "^# [a-z0-9 ]*:"
  echo "== pipeline_gpu, default (TF32 folded), 480p and 720p"
  timeout 120 $bin/pipeline_gpu --backend cuda --what t5,encode,decode --res 480,720 --reps 1 --md "$OUT/pipe.md" 2>&1 | grep -v "^#"
  for dt in fp16 bf16; do
    echo "== decode 480p, WANSERVE_CUDA_CONV_DTYPE=$dt"
    WANSERVE_CUDA_CONV_DTYPE=$dt timeout 60 $bin/pipeline_gpu --backend cuda --what decode --res 480 --reps 1 2>&1 | grep -v "^#" | head -n 2
    WANSERVE_CUDA_CONV_DTYPE=$dt WANSERVE_CUDA_PRECISION=bf16 timeout 50 $bin/golden_cuda --backend cuda --implemented-only --tolerance-floor 1e-2 tests/golden 2>&1 | grep -E "^vae_decode_tiny "
  done
  echo "== golden bf16 / fp32"
  WANSERVE_CUDA_PRECISION=bf16 timeout 50 $bin/golden_cuda --backend cuda --implemented-only --tolerance-floor 1e-2 tests/golden > "$OUT/golden.log" 2>&1; tail -n 1 "$OUT/golden.log"
  WANSERVE_CUDA_PRECISION=fp32 timeout 50 $bin/golden_cuda --backend cuda --implemented-only tests/golden >> "$OUT/golden.log" 2>&1; tail -n 1 "$OUT/golden.log"
  grep -E " FAIL" "$OUT/golden.log"
  timeout 60 $bin/pipeline_gpu --backend cuda --what decode --res 480 --reps 1 --profile > "$OUT/profile.log" 2>&1; grep -A14 -i "share\|op " "$OUT/profile.log" | head -n 24
  echo "== dit_gpu --fp8"
  timeout ${DIT_TIMEOUT:-260} $bin/dit_gpu --fp8 --res 480,720 --batch 1,2 --reps 1 --no-profile --md "$OUT/dit.md" 2>&1 | tee "$OUT/dit_gpu.log" | grep -v "^#" | tail -n 24
  ;;
check3)
  mkdir -p /tmp/chk && unpack .dev/pipe-check.tar.xz /tmp/chk
  export LD_LIBRARY_PATH="/tmp/chk/lib:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  bin=/tmp/chk/bin
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } 2>&1 | tee "$OUT/device.txt"
  for t in test_cuda_vae_ops test_cuda_ops; do
    timeout 120 "$bin/$t" >> "$OUT/ops.log" 2>&1; echo "rc=$?" >> "$OUT/ops.log"
  done
  grep -E "^(PASS|FAIL|SKIP)|rc=|check failed" "$OUT/ops.log" | tr '\n' ' '; echo
  timeout 120 $bin/pipeline_gpu --backend cuda --what encode,decode --res 480,720 --reps 1 --md "$OUT/pipe.md" 2>&1 | grep -v "^#"
  timeout 60 $bin/pipeline_gpu --backend cuda --what encode,decode --res 480 --reps 1 --profile > "$OUT/profile.log" 2>&1; grep -E "^  [a-z_0-9]+ +[0-9]+ calls" "$OUT/profile.log" | head -n 20
  WANSERVE_CUDA_PRECISION=bf16 timeout 50 $bin/golden_cuda --backend cuda --implemented-only --tolerance-floor 1e-2 tests/golden > "$OUT/golden.log" 2>&1; tail -n 1 "$OUT/golden.log"; grep " FAIL" "$OUT/golden.log"
  echo "== dit_gpu --fp8 --offload 20"
  timeout 200 $bin/dit_gpu --fp8 --offload 20 --res 480 --batch 1,2 --reps 2 --no-profile 2>&1 | tee "$OUT/dit.log" | grep -E "^(offload|RESULT|model)|forward [0-9]"
  echo "== dit_gpu --offload 30 (bf16)"
  timeout 150 $bin/dit_gpu --offload 30 --res 480 --batch 1 --reps 2 --no-profile 2>&1 | tee -a "$OUT/dit.log" | grep -E "^(offload|RESULT|model)|forward [0-9]"
  ;;
check4)
  mkdir -p /tmp/chk && unpack .dev/pipe-check.tar.xz /tmp/chk
  export LD_LIBRARY_PATH="/tmp/chk/lib:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  bin=/tmp/chk/bin
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; date -u; } 2>&1 | tee "$OUT/device.txt"
  for t in test_cuda_ops test_cuda_vae_ops; do
    timeout 120 "$bin/$t" >> "$OUT/ops.log" 2>&1; echo "rc=$?" >> "$OUT/ops.log"
  done
  grep -E "^(PASS|FAIL|SKIP)|rc=|check failed" "$OUT/ops.log" | tr '\n' ' '; echo
  WANSERVE_CUDA_PRECISION=bf16 timeout 50 $bin/golden_cuda --backend cuda --implemented-only --tolerance-floor 1e-2 tests/golden > "$OUT/golden.log" 2>&1; grep -E "lora|golden:| FAIL" "$OUT/golden.log"
  WANSERVE_CUDA_PRECISION=fp32 timeout 50 $bin/golden_cuda --backend cuda --implemented-only tests/golden >> "$OUT/golden.log" 2>&1; grep -E "lora|golden:| FAIL" "$OUT/golden.log" | tail -n 4
  timeout 150 $bin/lora_gpu --backend cuda --reps 2 2>&1 | tee "$OUT/lora_gpu.log" | tail -n 3
  ;;
lora)
  mkdir -p /tmp/chk && unpack .dev/pipe-check.tar.xz /tmp/chk
  export LD_LIBRARY_PATH="/tmp/chk/lib:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  timeout 150 /tmp/chk/bin/lora_gpu --backend cuda --reps 2 2>&1 | tee "$OUT/lora_gpu.log" | tail -n 3
  ;;
cluster)
  unpack .dev/pipe-libs2.tar.xz /tmp/wl
  unpack .dev/pipe-bin.tar.xz .dev/run
  env_setup
  export NCCL_NVLS_ENABLE=0 WANSERVE_START_TIMEOUT_S=300
  STEPS=${STEPS:-40}
  nvidia-smi -L | tee "$OUT/device.txt"
  ldd $bin/* 2>/dev/null | grep "not found" | sort -u | tee -a "$OUT/device.txt"
  if [ -z "${SKIP_PRE:-}" ] && [ -x $bin/test_cuda_vae_ops ]; then # the ops again first: this call may carry new kernels
    timeout 90 $bin/test_cuda_vae_ops > "$OUT/vae_ops.txt" 2>&1; echo "rc=$?" >> "$OUT/vae_ops.txt"
    grep -E "^(PASS|FAIL)|rc=|check failed" "$OUT/vae_ops.txt" | tr '\n' ' '; echo
  fi
  # the decoder's stages alone (its memory is the backend's tracked peak here)
  [ -z "${SKIP_PRE:-}" ] && timeout 80 $bin/pipeline_gpu --backend cuda --what decode --res 480,720 --reps 1 --md "$OUT/pipeline.md" 2>&1 | tee "$OUT/decode.txt"
  [ -z "${SKIP_PRE:-}" ] && timeout 60 $bin/pipeline_gpu --backend cuda --what encode --res 480,720 --reps 1 --md "$OUT/pipeline.md" 2>&1 | tee "$OUT/encode.txt"
  t0=$(date +%s%N)
  TASK=${TASK:-t2v}
  xflags=(); [ -n "${PRECISION:-}" ] && xflags=(--expert-flags "--precision $PRECISION")
  deploy/local-cluster up --model random:$TASK-a14b --backend cuda --high 1 --low 1 "${xflags[@]}" > "$OUT/up.txt" 2>&1
  echo "cluster up rc=$? in $((($(date +%s%N) - t0) / 1000000)) ms" | tee -a "$OUT/up.txt"
  "$bin/wanctl" status 2>&1 | tee "$OUT/status.txt"
  ( while sleep 2; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; done ) > "$OUT/gpumem.txt" 2>&1 &
  mon=$!
  t0=$(date +%s%N)
  gargs=""; [ "$TASK" = i2v ] && gargs="--task i2v --image deploy/assets/demo.png"
  gargs="$gargs ${GEN_ARGS:-}" # e.g. the 4-step distilled schedule: --solver euler_distill --guide-high 1 --guide-low 1
  timeout 560 "$bin/wanctl" generate --size 832x480 --frames 81 --steps "$STEPS" --seed 1 $gargs \
    --prompt "A red fox walks through deep snow at dawn" --out "$OUT/${TASK}_480p.mp4" > "$OUT/generate.txt" 2>&1
  echo "generate rc=$? end to end $((($(date +%s%N) - t0) / 1000000)) ms" | tee -a "$OUT/generate.txt"
  kill $mon 2>/dev/null
  grep -E "step (1|2|$((STEPS / 2)) |$((STEPS / 2 + 1))|$STEPS)/|wrote" "$OUT/generate.txt" | head
  logs=/tmp/wshome/local-cluster/logs
  grep -h -E "done in|Decode|EncodeText|encode" $logs/*.log | tail -n 20 | tee "$OUT/stages.txt"
  cat /tmp/wshome/local-cluster/procs > "$OUT/procs.txt" 2>/dev/null
  sort -t, -k2 -n "$OUT/gpumem.txt" | tail -n 8
  deploy/local-cluster down > /dev/null 2>&1
  tar -czf "$OUT/logs.tgz" -C /tmp/wshome/local-cluster logs 2> /dev/null
  rm -f "$OUT/${TASK}_480p.mp4.part"
  ;;
*) echo "unknown phase $phase"; exit 2 ;;
esac
