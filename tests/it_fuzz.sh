#!/usr/bin/env bash
# CI variant of `make fuzz`: builds the libFuzzer harnesses (fuzz/, mk/fuzz.mk) with clang into
# build-fuzz/ and runs each for IT_FUZZ_SECONDS (default 15) from its seed corpus. Prints
# "PASS fuzz_NAME: N execs, ..." or "FAIL fuzz_NAME: ..." per harness (fuzz/run.sh). Skips with
# one clear line (no PASS/FAIL) only when clang cannot link a -fsanitize=fuzzer program.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
secs=${IT_FUZZ_SECONDS:-15}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' \
  > "$probe/p.c"
if ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" > "$probe/log" 2>&1; then
  echo "SKIP it_fuzz: clang cannot build a libFuzzer program here ($(head -n 1 "$probe/log"))"
  exit 0
fi
if ! make --no-print-directory FUZZ_BUILD="$FUZZ_BUILD" fuzz-build > "$probe/build.log" 2>&1; then
  echo "FAIL fuzz_build: $(grep -m3 -E 'error|Error' "$probe/build.log" | tr '\n' ' ')"
  exit 1
fi
echo "PASS fuzz_build"
names=$(cd fuzz && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')
# shellcheck disable=SC2086
FUZZ_BUILD=$FUZZ_BUILD bash fuzz/run.sh "$secs" $names
