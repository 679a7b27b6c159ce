# layoutlib.sh — the common part of the checkpoint-layout tests (sourced by it_*_diffusers.sh):
# the repository root as working directory, $BUILD, a scratch $T removed at exit, $py (Debian's
# python3), and the two checks every layout test makes with `wanctl check-golden`.
set -u
root=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
cd "$root" || exit 1
BUILD=${BUILD:-build}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
py=/usr/bin/python3
[ -x "$py" ] || py=python3
# the converters import tests/tools/golden_rename.py; no __pycache__ in the tree
export PYTHONPATH="$root/tests/tools" PYTHONDONTWRITEBYTECODE=1

# same_as_original NAME ORIGINAL_CASE CONVERTED_CASE: the converted case passes with exactly the
# original's rel-L2 (the tensors are the same bytes, only their names and config changed).
same_as_original() {
  local want got
  want=$("$BUILD/bin/wanctl" check-golden "$2" | head -n 1 | awk '{print $3}')
  got=$("$BUILD/bin/wanctl" check-golden "$3" 2>&1 | head -n 1)
  if echo "$got" | grep -q " PASS$" && [ "$(echo "$got" | awk '{print $3}')" = "$want" ]; then
    echo "PASS $1"
  else
    echo "FAIL $1: $got (original layout rel_l2 $want)"
  fi
}

# missing_key_named NAME CASE KEY: loading CASE (converted without KEY) fails naming KEY.
missing_key_named() {
  if "$BUILD/bin/wanctl" check-golden "$2" 2>&1 | grep -qF "$3"; then
    echo "PASS $1"
  else
    echo "FAIL $1: $("$BUILD/bin/wanctl" check-golden "$2" 2>&1 | head -n 2 | tr '\n' ' ')"
  fi
}
