#!/usr/bin/env bash
# First contact (issue 19, item 11): what a newcomer meets before reading any code.
#  - plain `make` is `make all` (the binaries), not a generated file;
#  - every binary, every wanctl subcommand and deploy/local-cluster answer --help with their
#    usage on stdout and exit 0, and a usage error (an unknown flag) with exit 2 and the usage
#    on stderr;
#  - `local-cluster up` keeps the previous run's logs (logs.prev/).
# The page's side (no empty player, small defaults) is in tests/browser/generate.mjs.
# Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"

goal=$(make -pn 2> /dev/null | sed -n 's/^\.DEFAULT_GOAL := //p' | head -n 1)
check first_contact_make_default_goal_is_all test "$goal" = all

help_ok() { # NAME CMD...: --help -> usage on stdout, nothing on stderr, exit 0
  local n=$1
  shift
  "$@" --help > "$T/h.out" 2> "$T/h.err"
  local rc=$?
  if [ $rc -eq 0 ] && grep -q '^usage: ' "$T/h.out" && [ ! -s "$T/h.err" ]; then pass "$n"
  else fail "$n" "rc $rc, stdout '$(head -c 80 "$T/h.out")', stderr '$(head -c 80 "$T/h.err")'"; fi
}
usage_error() { # NAME CMD...: exit 2 with the usage on stderr, nothing on stdout
  local n=$1
  shift
  "$@" > "$T/u.out" 2> "$T/u.err"
  local rc=$?
  if [ $rc -eq 2 ] && grep -q 'usage: ' "$T/u.err" && [ ! -s "$T/u.out" ]; then pass "$n"
  else fail "$n" "rc $rc, stdout '$(head -c 80 "$T/u.out")', stderr '$(head -c 80 "$T/u.err")'"; fi
}
for b in wan-router wan-expert wan-encoder wan-decoder wanctl; do
  help_ok "first_contact_${b}_help" "$bin/$b"
  usage_error "first_contact_${b}_bad_flag_exit_2" "$bin/$b" --no-such-flag
done
for c in generate status rollout check-golden make-tiny-model; do
  help_ok "first_contact_wanctl_${c}_help" "$bin/wanctl" "$c"
  usage_error "first_contact_wanctl_${c}_bad_flag_exit_2" "$bin/wanctl" "$c" --no-such-flag
done
help_ok first_contact_local_cluster_help "$LC"
usage_error first_contact_local_cluster_bad_command_exit_2 "$LC" no-such-command
usage_error first_contact_local_cluster_bad_flag_exit_2 "$LC" up --no-such-flag

# the previous run's logs survive the next `up`
state="$WANSERVE_HOME/local-cluster"
if "$LC" up > "$T/up1.log" 2>&1 && "$LC" down > /dev/null 2>&1; then
  echo "a line of the first run" >> "$state/logs/router.log"
  "$LC" up > "$T/up2.log" 2>&1
  check first_contact_local_cluster_keeps_previous_logs \
    grep -q "a line of the first run" "$state/logs.prev/router.log"
  check first_contact_local_cluster_new_logs_fresh test -s "$state/logs/router.log" -a \
    "$(grep -c "a line of the first run" "$state/logs/router.log")" = 0
else
  fail first_contact_local_cluster_keeps_previous_logs "$(tail -n 3 "$T/up1.log")"
fi
