#!/usr/bin/env bash
# Packs what bench/run_pipeline_device.sh carries (issue 14): the service binaries, wanctl, etcd,
# the CUDA op tests and bench/pipeline_gpu from $BUILD (built here with nvcc; cudart static), and
# the shared libraries the device image lacks, dealt biggest-first into two halves so that each
# call stays under the 64 MiB a call carries with the tree. cuBLAS and cuDNN come from the
# device's Python installation. Output: .dev/pipe-libs{1,2}.tar.xz, .dev/pipe-bin.tar.xz (the
# cluster), and .dev/pipe-check.tar.xz: the op tests, pipeline_gpu and a check-golden binary
# relinked with --as-needed (no gRPC/ffmpeg), with their libraries: one call on its own.
#   check:   carry [.dev/pipe-check.tar.xz]
#   cluster: run libs1 carrying [.dev/pipe-libs1.tar.xz], then cluster carrying
#            [.dev/pipe-libs2.tar.xz, .dev/pipe-bin.tar.xz] on the same warm machine
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
[ "${1:-}" = check ] && skip_cluster=1 || skip_cluster=0
mkdir -p .dev
if [ "$skip_cluster" = 0 ]; then
mkdir -p "$stage/bin" "$stage/lib"
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
fi

# the check set: relinked with --as-needed so that only what the code uses is NEEDED
chk=$(mktemp -d)
trap 'rm -rf "$stage" "$chk"' EXIT
mkdir -p "$chk/bin" "$chk/lib"
printf 'print-ldlibs:\n\t@echo $(LDLIBS)\n' > "$chk/p.mk"
libs=$(make -s -f Makefile -f "$chk/p.mk" BUILD="$BUILD" print-ldlibs | tail -n 1)
arch="-Wl,--whole-archive $BUILD/libwanserve_cuda.a -Wl,--no-whole-archive $BUILD/libwanserve.a"
tcommon=$(ls tests/*.c | grep -v '/test_' | sed "s|^|$BUILD/obj/|; s|\.c$|.o|")
# golden_cuda: check-golden alone (cli/golden.c prints its usage through wanctl's)
cat > "$chk/g.c" <<'EOF2'
#include <stdio.h>
int golden_main(int argc, char **argv);
void wanctl_usage(const char *cmd, FILE *fp) { fprintf(fp, "usage: golden_cuda [check-golden options] DIR...\n"); (void)cmd; }
int main(int argc, char **argv) { return golden_main(argc - 1, argv + 1); }
EOF2
cc -c "$chk/g.c" -o "$chk/g.o"
link() { cc -o "$chk/bin/$1" "${@:2}" $arch -Wl,--as-needed $libs; }
link test_cuda_ops $BUILD/obj/tests/test_cuda_ops.o $tcommon
[ -f $BUILD/obj/tests/test_cuda_vae_ops.o ] && link test_cuda_vae_ops $BUILD/obj/tests/test_cuda_vae_ops.o $tcommon
for b in pipeline_gpu conv_gpu lora_gpu dit_gpu; do
  [ -f $BUILD/obj/bench/$b.o ] && link $b $BUILD/obj/bench/$b.o $BUILD/obj/bench/benchlib.o
done
link golden_cuda "$chk/g.o" $BUILD/obj/cli/golden*.o
strip "$chk"/bin/*
for b in "$chk"/bin/*; do ldd "$b" | awk '/=>/ {print $3}'; done | sort -u |
  grep -v -E 'lib(c|m|pthread|dl|rt|gcc_s)\.so|ld-linux|libcuda|libcublas|libcudart|libcudnn' |
  while read -r lib; do cp -L "$lib" "$chk/lib/"; done
tar -C "$chk" -cf - bin lib | xz -9 -T2 > .dev/pipe-check.tar.xz
ls -la .dev/pipe-*.tar.xz
