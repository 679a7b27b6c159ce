#!/usr/bin/env bash
# deploy/chaos_http.sh — router kills under HTTP load (issue 18): a local cluster with R routers
# (--http-listen, a shared result store) serves a stream of /v1/videos jobs, posted to a random
# live router and followed through any router, while a loop kill -9s a random router (never
# the last live one) and starts it again with the same command line. Another router takes the
# dead one's queued and running jobs over (gateway/jobstore.h). At the end every job must be
# completed, with frames (ffmpeg -f framemd5) identical to an undisturbed run of its seed.
#
#   deploy/chaos_http.sh [--jobs N] [--concurrency C] [--steps S] [--step-delay-ms D]
#                        [--seeds K] [--kill-every-s P] [--routers R] [--keep]
# Prints the events, then one line
#   chaos-http: jobs N completed N lost N mismatched N kills N takeovers N
#               record-writes-per-job X (undisturbed) etcd-revisions-per-job Y (under chaos)
# and exits 0 only when lost = mismatched = 0 and at least one router was killed.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
export BUILD
LC="$root/deploy/local-cluster"
jobs=24 conc=4 steps=10 delay=120 seeds=3 every=4 routers=2 keep=0
while [ $# -gt 0 ]; do
  case $1 in
    --jobs) jobs=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --step-delay-ms) delay=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --kill-every-s) every=$2; shift 2 ;;
    --routers) routers=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "chaos-http: unknown flag $1" >&2; exit 2 ;;
  esac
done
own_home=0
if [ -z "${WANSERVE_HOME:-}" ]; then WANSERVE_HOME=$(mktemp -d); own_home=1; fi
export WANSERVE_HOME
W="$WANSERVE_HOME/chaos-http"
rm -rf "$W"; mkdir -p "$W"
cleanup() {
  "$LC" down > /dev/null 2>&1
  if [ $own_home -eq 1 ] && [ $keep -eq 0 ]; then rm -rf "$WANSERVE_HOME"; fi
}
trap cleanup EXIT
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if ! "$LC" up --routers "$routers" --expert-flags "--step-delay-ms $delay" \
    --router-flags "--http-listen 127.0.0.1:0 --max-inflight 2" > "$W/up.log" 2>&1; then
  echo "chaos-http: cluster did not start: $(tail -n 3 "$W/up.log")"
  exit 1
fi
"$py" - "$WANSERVE_HOME/local-cluster" "$W" "$jobs" "$conc" "$steps" "$seeds" "$every" << 'EOF'
import glob, json, os, random, re, signal, subprocess, sys, threading, time
import urllib.error, urllib.request

state, W = sys.argv[1], sys.argv[2]
njobs, conc, steps, nseeds = (int(x) for x in sys.argv[3:7])
every = float(sys.argv[7])
lock = threading.Lock()

def routers():
    """[(name, pid, http, metrics)] of the routers in the procs file, latest entry per name."""
    out = {}
    for line in open(state + "/procs"):
        name, pid, af = line.split()[:3]
        if not name.startswith("router"):
            continue
        i = 0 if name == "router" else int(name.split("-")[1])
        hf = state + ("/http.addr" if i == 0 else "/http-%d.addr" % i)
        out[name] = (name, int(pid), hf, af + ".metrics")
    return list(out.values())

def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

def live_http():
    hs = []
    for name, pid, hf, _ in routers():
        if alive(pid) and os.path.exists(hf):
            hs.append(open(hf).read().strip())
    return hs

def call(method, path, body=None, h=None):
    """One request to router h (or to any live one, trying each): (status, bytes)."""
    hosts = [h] if h else random.sample(live_http(), len(live_http()))
    last = (0, b"no live router")
    for host in hosts:
        data = None if body is None else json.dumps(body).encode()
        r = urllib.request.Request("http://" + host + path, data=data, method=method,
                                   headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            last = (e.code, e.read())
            if e.code not in (502, 503):
                return last
        except OSError as e:
            last = (0, str(e).encode())
    return last

def frames(raw):
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", "-", "-f", "framemd5", "-"],
                       input=raw, capture_output=True)
    return [l for l in p.stdout.decode().splitlines() if l and not l.startswith("#")]

def spec(seed):
    return {"prompt": "chaos %d" % seed, "size": "64x64", "frames": 5, "steps": steps,
            "seed": 100 + seed}

def run_job(seed, h=None, secs=300):
    """POST, then follow to the end through any router: (final json, video bytes or None)."""
    for _ in range(60):
        st, raw = call("POST", "/v1/videos", spec(seed), h)
        if st == 200:
            break
        time.sleep(0.5)
    else:
        return {"status": "not-created", "why": raw[:200].decode(errors="replace")}, None
    vid = json.loads(raw)["id"]
    end, j = time.time() + secs, {}
    while time.time() < end:
        st, raw = call("GET", "/v1/videos/" + vid)
        if st == 200:
            j = json.loads(raw)
            if j["status"] in ("completed", "failed", "cancelled"):
                break
        time.sleep(0.3)
    video = None
    if j.get("status") == "completed":
        st, video = call("GET", "/v1/videos/%s/content" % vid)
        if st != 200:
            j["content_error"] = "%d %s" % (st, video[:200].decode(errors="replace"))
            video = None
    return j, video

def writes_total():
    n = 0.0
    for _, pid, _, mf in routers():
        if not (alive(pid) and os.path.exists(mf)):
            continue
        try:
            txt = urllib.request.urlopen("http://%s/metrics" % open(mf).read().strip(),
                                         timeout=5).read().decode()
        except OSError:
            continue
        for m in re.finditer(r"^wanserve_http_job_record_writes_total(?:\{\})? (\S+)$", txt, re.M):
            n += float(m.group(1))
    return n

def etcd_rev():
    ep = open(state + "/etcd.addr").read().strip()
    p = subprocess.run(["etcdctl", "--endpoints", ep, "endpoint", "status", "-w", "json"],
                       capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API="3"))
    try:
        return json.loads(p.stdout)[0]["Status"]["header"]["revision"]
    except (ValueError, KeyError, IndexError):
        return None

# undisturbed references, one per seed, on the first router
w0 = writes_total()
ref = {}
for k in range(nseeds):
    j, v = run_job(k, live_http()[0])
    ref[k] = frames(v) if v else None
    print("chaos-http: reference seed %d: %s, %d frames" % (k, j.get("status"),
          len(ref[k] or [])), flush=True)
writes_per_job = (writes_total() - w0) / max(nseeds, 1)

results, kills, done = [], [0], threading.Event()
def killer():
    while not done.wait(every):
        rs = [r for r in routers() if alive(r[1])]
        if len(rs) < 2:
            continue
        name, pid, hf, _ = random.choice(rs)
        args = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\0")[:-1]
        os.kill(pid, signal.SIGKILL)
        kills[0] += 1
        print("chaos-http: event kill -9 %s (pid %d)" % (name, pid), flush=True)
        time.sleep(1.0)
        if os.path.exists(hf):
            os.remove(hf)
        log = open("%s/logs/%s.log" % (state, name), "ab")
        p = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        with open(state + "/procs", "a") as f:
            f.write("%s %d %s/%s.addr\n" % (name, p.pid, state, name))
        print("chaos-http: event restarted %s (pid %d)" % (name, p.pid), flush=True)

def worker(idx):
    while True:
        with lock:
            if not todo:
                return
            i = todo.pop()
        j, v = run_job(i % nseeds)
        same = v is not None and ref.get(i % nseeds) is not None and frames(v) == ref[i % nseeds]
        with lock:
            results.append((i, j.get("status"), same, j.get("runs", 1),
                            j.get("error") or j.get("content_error")))

r0 = etcd_rev()
todo = list(range(njobs))
kt = threading.Thread(target=killer)
kt.start()
ws = [threading.Thread(target=worker, args=(k,)) for k in range(conc)]
[t.start() for t in ws]
[t.join() for t in ws]
done.set()
kt.join()
r1 = etcd_rev()
takeovers = sum(open(f, errors="replace").read().count("jobs: took over")
                for f in glob.glob(state + "/logs/router*.log"))
completed = sum(1 for r in results if r[1] == "completed")
lost = njobs - completed
mism = sum(1 for r in results if r[1] == "completed" and not r[2])
for r in results:
    if r[1] != "completed" or not r[2]:
        print("chaos-http: failed job %d: %s same=%s runs=%s %s" % r, flush=True)
revs = "%.1f" % ((r1 - r0) / njobs) if r0 is not None and r1 is not None else "?"
print("chaos-http: jobs %d completed %d lost %d mismatched %d kills %d takeovers %d "
      "record-writes-per-job %.1f (undisturbed) etcd-revisions-per-job %s (under chaos)"
      % (njobs, completed, lost, mism, kills[0], takeovers, writes_per_job, revs), flush=True)
sys.exit(0 if lost == 0 and mism == 0 and kills[0] > 0 else 1)
EOF
