# itlib.sh — the common start of the black-box cluster tests (sourced, not run): the repository
# root as working directory, $BUILD and $bin, a private WANSERVE_HOME (so the state of
# deploy/local-cluster never collides with another run), $T for scratch files, $LC, an EXIT
# trap that stops the cluster and removes the scratch files (it_cleanup; a test that needs more
# sets its own trap and calls it), and the PASS/FAIL helpers tests/run.sh counts.
set -u
root=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
cd "$root" || exit 1
BUILD=${BUILD:-build}
export BUILD
bin="$root/$BUILD/bin"
export WANSERVE_HOME
WANSERVE_HOME=$(mktemp -d)
T="$WANSERVE_HOME/t"
mkdir -p "$T"
LC="$root/deploy/local-cluster"
it_cleanup() {
  "$LC" down > /dev/null 2>&1
  rm -rf "$WANSERVE_HOME"
}
trap it_cleanup EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }
check() {
  local n=$1
  shift
  if "$@"; then pass "$n"; else fail "$n"; fi
}
