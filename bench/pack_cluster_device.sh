#!/usr/bin/env bash
# Packs what a device run of the whole cluster needs (issue 7, item 4): the service binaries and
# wanctl from $BUILD (built here with nvcc, cudart linked statically), etcd, and the shared
# libraries the device image lacks (.dev/device_ldconfig.txt = `ldconfig -p` read there; without
# it every non-system library is packed). CUDA libraries come from the device itself.
# Output: .dev/cluster-libs{1,2}.tar.xz and .dev/cluster-bin.tar.xz; see run_cluster_device.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" .dev
bins="wan-router wan-expert wan-encoder wan-decoder wanctl"
for b in $bins; do cp "$BUILD/bin/$b" "$stage/bin/"; done
cp "$(command -v etcd)" "$stage/bin/"
strip "$stage"/bin/wan-* "$stage/bin/wanctl"
for b in $bins; do ldd "$BUILD/bin/$b" | awk '/=>/ {print $3}'; done | sort -u |
  grep -v -E 'lib(c|m|pthread|dl|rt|stdc\+\+|gcc_s)\.so|ld-linux|libcuda|libcublas|libcudart|libcudnn' |
  while read -r lib; do
    name=$(basename "$lib")
    if [ -f .dev/device_ldconfig.txt ] && grep -q " $name " .dev/device_ldconfig.txt; then continue; fi
    cp -L "$lib" "$stage/lib/"
  done
# two parts, each carried by its own device call (a call carries at most 64 MiB with the tree):
# the libraries first (unpacked into /tmp/wl, which stays while the machine is warm), then the
# binaries with the run itself
# libraries dealt biggest-first into two halves of about the same size
(cd "$stage" && ls -S lib) | awk '{ print > ((NR % 2) ? "'"$stage"'/half1" : "'"$stage"'/half2") }'
for h in 1 2; do
  sed 's|^|lib/|' "$stage/half$h" | tar -C "$stage" -cf - -T - | xz -6 -T2 > ".dev/cluster-libs$h.tar.xz"
done
tar -C "$stage" -cf - bin | xz -6 -T2 > .dev/cluster-bin.tar.xz
ls -la .dev/cluster-libs1.tar.xz .dev/cluster-libs2.tar.xz .dev/cluster-bin.tar.xz
