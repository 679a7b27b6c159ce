#!/usr/bin/env bash
# pack_device.sh — prepares, on a development machine (nvcc, no GPU), what the device run of
# bench/run_device.sh carries: the CUDA build in build-cuda/, a small `check-golden` binary
# (.dev/golden_cuda: golden_main without the rest of wanctl, so it needs no ffmpeg/gRPC), and
# .dev/libs.tar.xz with the non-system shared libraries the three binaries link (the device has
# no package registry; cuBLAS and cuDNN are taken from its CUDA toolkit and PyTorch).
#
# Then, with the device tool:
#   run(command="bash bench/run_device.sh check", carry=[build-cuda/tests/test_cuda_ops,
#       build-cuda/bench/dit_gpu, .dev/golden_cuda, .dev/libs.tar.xz])    (also: bench, torch)
set -eu
cd "$(dirname "$0")/.."
B=build-cuda
make BUILD=$B $B/tests/test_cuda_ops $B/bench/dit_gpu $B/bin/wanctl -j2
mkdir -p .dev/obj
cat >.dev/golden_main.c <<'C'
/* device-run helper: arguments as after `wanctl check-golden`. */
int golden_main(int argc, char **argv);
int main(int argc, char **argv) { return golden_main(argc - 1, argv + 1); }
C
cc -c .dev/golden_main.c -o .dev/obj/golden_main.o
cc -o .dev/golden_cuda .dev/obj/golden_main.o $B/obj/cli/golden*.o $B/libwanserve.a \
  $(pkg-config --libs openblas libcjson libprotobuf-c sentencepiece libutf8proc libzip libpng \
    libjpeg libavformat libavcodec libavutil libswscale grpc) -lstdc++ -lm -lpthread -fopenmp \
  -L/usr/local/cuda/lib64 -lcudart_static -lcublas -lcublasLt -ldl -lrt
rm -rf .dev/lib && mkdir -p .dev/lib
for b in $B/tests/test_cuda_ops $B/bench/dit_gpu .dev/golden_cuda; do ldd "$b"; done |
  awk '{print $3}' |
  grep -v -E '^$|/libc\.so|/libm\.so|libpthread|/libdl\.so|/librt\.so|ld-linux|/usr/local/cuda' |
  sort -u | while read -r l; do cp -L "$l" .dev/lib/; done
(cd .dev && tar cf - lib | xz -T2 -6 >libs.tar.xz)
ls -la .dev/golden_cuda .dev/libs.tar.xz
