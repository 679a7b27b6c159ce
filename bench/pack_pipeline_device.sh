#!/usr/bin/env bash
# Packs what bench/run_pipeline_device.sh carries (issue 14): the service binaries, wanctl, etcd,
# the CUDA op tests and bench/pipeline_gpu from $BUILD (built here with nvcc; cudart static), and
# the shared libraries the device image lacks, dealt biggest-first into two halves so that each
# call stays under the 64 MiB a call carries with the tree. cuBLAS and cuDNN come from the
# device's Python installation. Output: .dev/pipe-libs{1,2}.tar.xz, .dev/pipe-bin.tar.xz.
#   run libs1: carry [.dev/pipe-libs1.tar.xz]; then check / cluster: carry [.dev/pipe-libs2.tar.xz,
#   .dev/pipe-bin.tar.xz] (on the same warm machine)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" .dev
bins="$BUILD/bin/wan-router $BUILD/bin/wan-expert $BUILD/bin/wan-encoder $BUILD/bin/wan-decoder
  $BUILD/bin/wanctl $BUILD/bench/pipeline_gpu $BUILD/tests/test_cuda_ops"
[ -x "$BUILD/tests/test_cuda_vae_ops" ] && bins="$bins $BUILD/tests/test_cuda_vae_ops"
for b in $bins; do cp "$b" "$stage/bin/"; done
cp "$(command -v etcd)" "$stage/bin/"
strip "$stage"/bin/*
for b in $bins; do ldd "$b" | awk '/=>/ {print $3}'; done | sort -u |
  grep -v -E 'lib(c|m|pthread|dl|rt|gcc_s)\.so|ld-linux|libcuda|libcublas|libcudart|libcudnn' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
(cd "$stage" && ls -S lib) | awk '{ print > ((NR % 2) ? "'"$stage"'/half1" : "'"$stage"'/half2") }'
for h in 1 2; do
  sed 's|^|lib/|' "$stage/half$h" | tar -C "$stage" -cf - -T - | xz -9 -T2 > ".dev/pipe-libs$h.tar.xz"
done
tar -C "$stage" -cf - bin | xz -9 -T2 > .dev/pipe-bin.tar.xz
ls -la .dev/pipe-libs1.tar.xz .dev/pipe-libs2.tar.xz .dev/pipe-bin.tar.xz
