#!/usr/bin/env bash
# fuzz/run.sh SECONDS NAME... — runs each libFuzzer harness $FUZZ_BUILD/fuzz/fuzz_NAME for
# SECONDS, seeded from fuzz/corpus/NAME/ (read-only: new inputs go to a scratch corpus under
# $FUZZ_BUILD/corpus/NAME, crashes to $FUZZ_BUILD/artifacts/). Prints one line per harness:
#   PASS fuzz_NAME: N execs, E exec/s, S s   or   FAIL fuzz_NAME: <reason> (log: PATH)
# Exit status: 0 when every harness passed. FUZZ_JOBS unset = one harness at a time.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
secs=$1; shift
fails=0
mkdir -p "$FUZZ_BUILD/artifacts" "$FUZZ_BUILD/logs"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for name in "$@"; do
  bin="$FUZZ_BUILD/fuzz/fuzz_$name"
  log="$FUZZ_BUILD/logs/fuzz_$name.log"
  if [ ! -x "$bin" ]; then echo "FAIL fuzz_$name: $bin missing"; fails=$((fails + 1)); continue; fi
  corpus="$FUZZ_BUILD/corpus/$name"
  mkdir -p "$corpus" "$scratch/$name"
  # -timeout: one input over 25 s is a hang; -rss_limit_mb: ASan + a model in memory;
  # TMPDIR: the harnesses' start-up assets go to the scratch dir and are removed with it
  TMPDIR="$scratch/$name" ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=4096 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$FUZZ_BUILD/artifacts/fuzz_$name-" \
    "$corpus" "fuzz/corpus/$name" > "$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ] && [ -n "$execs" ]; then
    echo "PASS fuzz_$name: $execs execs, $eps exec/s, ${secs} s, $cov"
  else
    why=$(grep -a -m1 -E 'ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error|SUMMARY' "$log")
    echo "FAIL fuzz_$name: exit $rc ${why:-} (log: $log)"
    fails=$((fails + 1))
  fi
done
[ "$fails" -eq 0 ]
