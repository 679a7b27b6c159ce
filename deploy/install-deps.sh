#!/usr/bin/env bash
# Installs every Debian 12 package wanserve needs to build, test and run its demo.
# Idempotent: prints nothing and exits 0 when everything is already present.
# Uses sudo when not root. The package list (and why each is needed) is in README.md.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang-format     # compiler, flags discovery, format-check
  libopenblas-dev                             # sgemm for the CPU backend
  libcjson-dev                                # JSON (config.json, safetensors headers, case.json)
  libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler  # RPC + contracts
  etcd-server etcd-client                     # discovery/rollout store (tests run a real one)
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev  # H.264 MP4 output
  libx264-dev                                 # so libavcodec has the libx264 encoder at hand
  libsentencepiece-dev                        # umT5 tokenizer
  libutf8proc-dev                             # prompt cleaning (NFC, width folding)
  libzip-dev                                  # .pth (PyTorch zip) checkpoints
  libpng-dev libjpeg-dev                      # I2V image input
  libmicrohttpd-dev                           # HTTP: video-jobs API and Prometheus metrics endpoints
  python3 python3-grpcio                      # black-box RPC tests with an independent client
  python3-yaml                                # tests/it_manifests.sh parses deploy/k8s/*.yaml
  ffmpeg                                      # ffprobe: integration tests check MP4s independently
  curl                                        # health probes of etcd in deploy scripts
  clang                                       # libFuzzer harnesses (make fuzz, tests/it_fuzz.sh)
  libclang-rt-14-dev                          # clang's fuzzer/ASan/UBSan runtimes (-fsanitize=fuzzer)
  openssl                                     # deploy/make-test-ca.sh: test CA for TLS/mTLS tests
  valgrind                                    # memcheck runs of services and unit tests (issue 9)
  chromium                                    # the browser test of the web page (Playwright drives it)
)

missing=()
for p in "${PKGS[@]}"; do
  [[ "$p" == \#* ]] && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
