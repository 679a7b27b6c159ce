#!/usr/bin/env bash
# batching_device.sh — step-level batching on the GPU (issue 8), the pack_device.sh way:
#   bash bench/batching_device.sh pack   (development machine with nvcc: builds into build-scale/,
#        links wan-expert, bench/batching, tests/test_expert_batching and a model writer with
#        --as-needed into .dev/scale/bin, packs their non-system libraries into
#        .dev/scale/libs.tar.xz, ~13 MB)
#   then one device call: run(command="bash bench/batching_device.sh run",
#        carry=[".dev/scale/bin", ".dev/scale/libs.tar.xz"])
# `run` checks batched == unbatched on --backend cuda (tests/test_expert_batching.c with
# TEST_EXPERT_BACKEND=cuda; skip with SKIP_EQUIV=1), writes a random Wan-1.3B-width model
# (dim 1536, 12 heads, ffn 8960, LAYERS layers, default 2) and measures steps/s of one expert
# with --max-batch 1, 2, 4 under 4 concurrent clients at 240x416x9 (SMALL steps, default 128) and
# 480x832x17 (LARGE steps, default 32). Rows go to $OUT/rows.md (bench/RESULTS.md has the tables).
set -u
cd "$(dirname "$0")/.."
D=.dev/scale
case ${1:-run} in
pack)
  set -e
  B=build-scale
  make BUILD=$B $B/bin/wan-expert $B/bench/batching $B/tests/test_expert_batching -j2
  mkdir -p $D/bin $D/obj
  cat > $D/mkmodel.c <<'C'
/* mkmodel DIR DIM HEADS LAYERS FFN: a random checkpoint in the tiny layout (models/tiny.h). */
#include <stdio.h>
#include <stdlib.h>
#include "models/tiny.h"
int main(int argc, char **argv) {
  if (argc < 6) return 2;
  dit_config c;
  int td;
  ws_err e = {0};
  tiny_dit_config(0, &c, &td);
  c.dim = atoi(argv[2]), c.num_heads = atoi(argv[3]), c.num_layers = atoi(argv[4]);
  c.ffn_dim = atoi(argv[5]);
  if (tiny_write_model_with(argv[1], 1, &c, td, &e) < 0) return fprintf(stderr, "%s\n", e.msg), 1;
  printf("text_len %d text_dim %d\n", c.text_len, td);
  return 0;
}
C
  cc -std=c11 -I. -c $D/mkmodel.c -o $D/obj/mkmodel.o
  L="$(pkg-config --libs openblas libcjson grpc libprotobuf-c sentencepiece libutf8proc libzip \
    libpng libjpeg libavformat libavcodec libavutil libswscale libmicrohttpd) -lstdc++ -lm \
    -lpthread -fopenmp -L/usr/local/cuda/lib64 -lcudart_static -lcublas -lcublasLt -ldl -lrt"
  # shellcheck disable=SC2086
  {
    cc -Wl,--as-needed -o $D/bin/wan-expert $B/obj/services/expert/*.o $B/libwanserve.a $L
    cc -Wl,--as-needed -o $D/bin/batching $B/obj/bench/batching.o $B/libwanserve.a $L
    cc -Wl,--as-needed -o $D/bin/test_expert_batching $B/obj/tests/test_expert_batching.o \
      $B/obj/tests/testlib.o $B/libwanserve.a $L
    cc -Wl,--as-needed -o $D/bin/mkmodel $D/obj/mkmodel.o $B/libwanserve.a $L
  }
  rm -rf "${D:?}/lib" && mkdir -p "$D/lib"
  for b in $D/bin/*; do ldd "$b"; done | awk '{print $3}' |
    grep -v -E '^$|/libc\.so|/libm\.so|libpthread|/libdl\.so|/librt\.so|ld-linux|/usr/local/cuda' |
    sort -u | while read -r l; do cp -L "$l" $D/lib/; done
  (cd $D && tar cf - lib | xz -T2 -6 > libs.tar.xz && rm -rf lib)
  ls -la $D/bin $D/libs.tar.xz
  ;;
run)
  OUT=${OUT:-/tmp/out}
  mkdir -p "$OUT" /tmp/wl /tmp/m
  tar xJf $D/libs.tar.xz -C /tmp/wl --strip-components=1
  pylib() { python3 -c "import importlib,sys; m=importlib.import_module(sys.argv[1]); print(list(m.__path__)[0] + '/lib')" "$1" 2>/dev/null; }
  LD_LIBRARY_PATH=/tmp/wl:$(pylib nvidia.cudnn):$(pylib nvidia.cublas):/usr/local/cuda/lib64
  export LD_LIBRARY_PATH
  export CUDA_VISIBLE_DEVICES=0
  B=$D/bin
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/device.txt"
  if [ -z "${SKIP_EQUIV:-}" ]; then
    echo "== batching equivalence on the GPU (tiny model, both experts --backend cuda)"
    TEST_EXPERT_BACKEND=cuda BUILD=$D timeout 60 $B/test_expert_batching 2>&1 | tee "$OUT/equiv.log"
  fi
  $B/mkmodel /tmp/m/wan13 1536 12 "${LAYERS:-2}" 8960 | tee -a "$OUT/device.txt"
  for mb in 1 2 4; do
    rm -f /tmp/ea
    $B/wan-expert --role high --backend cuda --model /tmp/m/wan13 --addr-file /tmp/ea \
      --max-batch $mb --max-delay-ms 5 --log-level warn --workers 16 > "$OUT/expert-$mb.log" 2>&1 &
    p=$!
    for _ in $(seq 600); do [ -s /tmp/ea ] && break; sleep 0.1; done
    a=$(cat /tmp/ea)
    timeout 60 $B/batching "$a" 32 32 3 30 52 4 "${SMALL:-128}" "240x416x9 (small)" $mb | tee -a "$OUT/rows.md"
    timeout 90 $B/batching "$a" 32 32 5 60 104 4 "${LARGE:-32}" "480x832x17 (large)" $mb | tee -a "$OUT/rows.md"
    kill $p
    wait $p
  done
  ;;
*) echo "usage: $0 pack|run" >&2; exit 2 ;;
esac
