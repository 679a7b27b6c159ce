#!/usr/bin/env bash
# A golden case of a kind the code does not implement (issue 17, item 6): under
# --implemented-only (what tests/run.sh runs) it is listed by name as SKIP and counted as
# skipped, never as passed; given without that flag it fails. Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"

c="$T/cases/future_case"
mkdir -p "$c"
echo '{"name": "future_case", "kind": "no_such_kind_yet"}' > "$c/case.json"

"$bin/wanctl" check-golden --implemented-only "$T/cases" > "$T/io.out" 2>&1
rc=$?
check golden_skip_implemented_only_exit_0 test $rc -eq 0
check golden_skip_listed_by_name grep -q '^future_case no_such_kind_yet - - SKIP$' "$T/io.out"
check golden_skip_counted_as_skipped grep -q '^golden: 0 passed, 0 failed, 1 skipped' "$T/io.out"

"$bin/wanctl" check-golden "$c" > "$T/all.out" 2>&1
rc=$?
check golden_unknown_kind_fails_when_named test $rc -ne 0
check golden_unknown_kind_fail_line grep -q '^future_case no_such_kind_yet - - FAIL$' "$T/all.out"
