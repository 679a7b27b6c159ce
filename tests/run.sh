#!/usr/bin/env bash
# Runs every test: the C unit-test binaries (build/tests/test_*), the golden cases (tests/golden
# and, when present, ../shared/golden) through `wanctl check-golden`, and the black-box
# integration scripts (tests/it_*.sh). Each test prints "PASS name", "FAIL name" or "SKIP name"
# (it could not run here: no GPU, no browser, a golden kind not implemented yet); a binary that
# crashes counts as one failure. Ends with "N passed, N failed, N skipped", so a skip is seen.
set -u
BUILD=${BUILD:-build}
export BUILD
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
pass=0; fail=0; skip=0
log=$(mktemp)
count() { # $1 = output file, $2 = rc, $3 = what
  local p f s
  p=$(grep -c '^PASS ' "$1"); f=$(grep -c '^FAIL ' "$1"); s=$(grep -c '^SKIP ' "$1")
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
  if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $3 (exit status $2)"; fail=$((fail + 1))
  fi
}
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  "$t" >"$log" 2>&1; rc=$?
  cat "$log"; count "$log" $rc "$(basename "$t")"
done
golden_dirs=(tests/golden)
# cases added later to the shared set are run with no code change
if [ -n "${WS_EXTRA_GOLDEN:-}" ] && [ -d "$WS_EXTRA_GOLDEN" ]; then golden_dirs+=("$WS_EXTRA_GOLDEN")
elif [ -d ../shared/golden ]; then golden_dirs+=(../shared/golden); fi
echo "== golden cases (${golden_dirs[*]})"
"$BUILD"/bin/wanctl check-golden --implemented-only "${golden_dirs[@]}" >"$log" 2>&1; rc=$?
sed 's/^\([^ ]*\) \(.*\) \(PASS\|FAIL\|SKIP\)$/\3 golden:\1 \2/' "$log" >"$log.2"
cat "$log.2"; count "$log.2" $rc golden
for s in tests/it_*.sh; do
  [ -f "$s" ] || continue
  echo "== $(basename "$s")"
  bash "$s" >"$log" 2>&1; rc=$?
  cat "$log"; count "$log" $rc "$(basename "$s")"
done
rm -f "$log" "$log.2"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
