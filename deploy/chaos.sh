#!/usr/bin/env bash
# deploy/chaos.sh — chaos under load (issue 9): a local cluster with 2 high + 2 low experts serves
# a stream of concurrent requests (wanctl generate, fixed seeds, --latent-out) while a loop
#   - kill -9s a random expert replica and starts a replacement (deploy/local-cluster add),
#   - stops one (SIGSTOP) for a while and continues it (SIGCONT): a hung replica,
#   - restarts etcd (etcd-stop, pause, etcd-start; same data dir),
#   - replaces the decoder, alternately gracefully (SIGTERM: it deregisters and drains) and by
#     kill -9 (a decode in flight then finishes on the new decoder, router/calls.c), starting a
#     new one at once;
# with two bad expert-low registrations in etcd all along (a closed port, a high-noise expert).
# At the end every request must have succeeded and every final latent must be bit-identical to
# `wanctl generate --local` with the same seed (computed first, undisturbed).
#
#   deploy/chaos.sh [--requests N] [--concurrency C] [--steps S] [--step-delay-ms D]
#                   [--seeds K] [--pause-s P] [--keep]
# Prints the events as they happen, then one line
#   chaos: requests N ok N failed N mismatched N kills N etcd-restarts N decoder-restarts N
# and exits 0 only when failed = mismatched = 0 and at least one fault was injected.
# Uses $WANSERVE_HOME when set (else a temp dir, removed unless --keep); BUILD as everywhere.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
export BUILD
bin="$root/$BUILD/bin"
LC="$root/deploy/local-cluster"
requests=24 conc=4 steps=8 delay=40 seeds=4 pause=1.5 keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --requests) requests=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --step-delay-ms) delay=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --pause-s) pause=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "chaos: unknown flag $1" >&2; exit 2 ;;
  esac
done
own_home=0
if [ -z "${WANSERVE_HOME:-}" ]; then WANSERVE_HOME=$(mktemp -d); own_home=1; fi
export WANSERVE_HOME
W="$WANSERVE_HOME/chaos"
rm -rf "$W"; mkdir -p "$W/out" "$W/ref"
state="$WANSERVE_HOME/local-cluster"
chaos_pid=""
cleanup() {
  [ -n "$chaos_pid" ] && kill "$chaos_pid" 2>/dev/null && wait "$chaos_pid" 2>/dev/null
  "$LC" down > /dev/null 2>&1
  if [ $own_home -eq 1 ] && [ $keep -eq 0 ]; then rm -rf "$WANSERVE_HOME"; fi
}
trap cleanup EXIT
log() { echo "chaos: $*"; }
# alive PID: running and not a zombie (a killed replica's parent may be slow to reap it, and
# kill -0 succeeds on zombies)
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit ($3 == "Z") ? 0 : 1 }' "/proc/$1/stat" 2>/dev/null; }

# Short etcd leases are not configurable from here; the router retries around dead replicas
# (router/calls.c) and waits for a replica of a role to reappear (--replica-wait-ms).
if ! "$LC" up --high 2 --low 2 --expert-flags "--step-delay-ms $delay" \
    --router-flags "--max-inflight 64 --max-attempts 8 --replica-wait-ms 30000" > "$W/up.log" 2>&1; then
  log "cluster did not start: $(tail -n 5 "$W/up.log")"
  exit 1
fi
model=$(sed -n 's/^model: //p' < <("$LC" status))
# bad registrations (issue 19, item 3) that stay for the whole run (no lease): an expert-low key
# on a closed port and one pointing at a high-noise expert; the router ejects the first and
# refuses the second after its Expert.Info, and no request may fail or differ because of them
fake_reg() { # ID ADDR
  ETCDCTL_API=3 etcdctl --endpoints "$(cat "$state/etcd.addr")" put \
    "/wanserve/v1/instances/expert-low/$1" \
    "{\"addr\":\"$2\",\"role\":\"expert-low\",\"version\":\"v1\"}" > /dev/null ||
    { log "could not write the fake registration $1"; exit 1; }
}
fake_reg chaos-dead 127.0.0.1:1
fake_reg chaos-wrong-role "$(cat "$state/high-0.addr")"
log "fake registrations: expert-low chaos-dead (closed port), chaos-wrong-role (a high expert)"
G=(--size 64x64 --frames 9 --steps "$steps")
prompt_of() { echo "chaos request with seed $1"; }

# 1. reference latents, undisturbed, in-process
for s in $(seq 1 "$seeds"); do
  if ! "$bin/wanctl" generate --local --model "$model" "${G[@]}" --seed "$s" --prompt "$(prompt_of "$s")" \
      --quiet --out "$W/ref/$s.mp4" --latent-out "$W/ref/$s.st" > /dev/null 2> "$W/ref/$s.err"; then
    log "reference for seed $s failed: $(tail -n 2 "$W/ref/$s.err")"
    exit 1
  fi
done
log "references: $seeds seeds computed with --local"

# 2. the chaos loop (background): one fault every ~pause seconds, round robin over the kinds
chaos_loop() {
  local n=0 kills=0 etcd=0 dec=0 hung=0
  trap 'echo "$kills $etcd $dec $hung" > "$W/counts"; exit 0' TERM
  echo "0 0 0 0" > "$W/counts"
  while [ ! -e "$W/stop" ]; do
    sleep "$pause"
    [ -e "$W/stop" ] && break
    n=$((n + 1))
    case $((n % 5)) in
      0) # etcd restart: services keep serving from their last view, then re-sync
        if "$LC" etcd-stop > /dev/null 2>&1; then
          sleep "$pause"
          "$LC" etcd-start > /dev/null 2>&1 && etcd=$((etcd + 1)) && log "event: etcd restarted"
        fi ;;
      4) # a hung replica (issue 19, item 4): SIGSTOP one live expert, SIGCONT it a while later;
         # its lease lapses and the router retries its steps elsewhere
        local hline hpid
        hline=$(awk '$1 ~ /^(high|low)-/ {print $1, $2}' "$state/procs" | while read -r nm p; do
          alive "$p" && echo "$nm $p"; done | shuf -n 1)
        hpid=${hline#* }
        if [ -n "$hline" ] && kill -STOP "$hpid" 2> /dev/null; then
          hung=$((hung + 1))
          log "event: SIGSTOP ${hline%% *} replica pid $hpid"
          ( sleep "$(echo "$pause * 4" | bc)"; kill -CONT "$hpid" 2> /dev/null ) &
        fi ;;
      3) # decoder replaced: graceful stop (deregister, drain) or kill -9, then a fresh one
        local dpid sig=TERM; dpid=$(awk '$1 ~ /^decoder-/ {print $2}' "$state/procs" | while read -r p; do
          alive "$p" && echo "$p"; done | head -n 1)
        [ $((dec % 2)) -eq 1 ] && sig=KILL
        if [ -n "$dpid" ]; then
          kill -"$sig" "$dpid"
          "$LC" add decoder > /dev/null 2>&1 && dec=$((dec + 1)) && log "event: decoder replaced (old pid $dpid, SIG$sig)"
        fi ;;
      *) # kill -9 one live expert replica, start a replacement of the same role
        local line victim role
        line=$(awk '$1 ~ /^(high|low)-/ {print $1, $2}' "$state/procs" | while read -r nm p; do
          alive "$p" && echo "$nm $p"; done | shuf -n 1)
        [ -z "$line" ] && continue
        victim=${line#* }; role=${line%%-*}
        kill -KILL "$victim" 2>/dev/null && kills=$((kills + 1))
        log "event: kill -9 $role replica pid $victim"
        "$LC" add "$role" > /dev/null 2>&1 || log "event: could not start a new $role replica"
        ;;
    esac
    echo "$kills $etcd $dec $hung" > "$W/counts"
  done
  echo "$kills $etcd $dec $hung" > "$W/counts"
}
chaos_loop &
chaos_pid=$!

# 3. the request stream: `requests` requests, at most `conc` at a time
run_one() { # INDEX
  local i=$1 s=$(( ($1 % seeds) + 1 ))
  if "$bin/wanctl" generate "${G[@]}" --seed "$s" --prompt "$(prompt_of "$s")" --quiet \
      --out "$W/out/$i.mp4" --latent-out "$W/out/$i.st" > /dev/null 2> "$W/out/$i.err"; then
    if cmp -s "$W/out/$i.st" "$W/ref/$s.st"; then echo ok > "$W/out/$i.res"; else echo mismatch > "$W/out/$i.res"; fi
  else
    echo failed > "$W/out/$i.res"
  fi
}
t0=$(date +%s)
for i in $(seq 1 "$requests"); do
  while [ "$(jobs -rp | wc -l)" -gt "$conc" ]; do sleep 0.1; done # conc + the chaos loop
  run_one "$i" &
done
while [ "$(jobs -rp | wc -l)" -gt 1 ]; do sleep 0.2; done
touch "$W/stop"
wait "$chaos_pid" 2>/dev/null
chaos_pid=""
secs=$(( $(date +%s) - t0 ))
read -r kills etcd dec hung < "$W/counts"
ok=$(grep -lx ok "$W"/out/*.res 2>/dev/null | wc -l)
failed=$(grep -lx failed "$W"/out/*.res 2>/dev/null | wc -l)
mism=$(grep -lx mismatch "$W"/out/*.res 2>/dev/null | wc -l)
for f in $(grep -lx failed "$W"/out/*.res 2>/dev/null); do
  log "failed request $(basename "$f" .res): $(tail -n 1 "${f%.res}.err")"
done
retries=$(grep -c "retrying on another replica\|trying another" "$state/logs/router.log" 2>/dev/null)
log "requests $requests ok $ok failed $failed mismatched $mism kills $kills etcd-restarts $etcd decoder-restarts $dec hung $hung (router retries ${retries:-0}) in ${secs} s"
[ "$ok" -eq "$requests" ] && [ "$failed" -eq 0 ] && [ "$mism" -eq 0 ] && [ $((kills + etcd + dec)) -gt 0 ]
