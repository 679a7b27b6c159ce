#!/usr/bin/env bash
# Durable HTTP video jobs (issue 18): two routers on one etcd and one result store (a local
# cluster, real binaries, the built-in tiny model). Jobs made on router A are read, streamed,
# downloaded and cancelled through router B; A killed with -9 while it holds a finished, a
# running and two queued jobs: every one completes or stays available through B, with frames
# (ffmpeg -f framemd5) identical to undisturbed runs; SIGTERM of a router with running jobs fails
# none; etcd restarted mid-job: the job goes on; a full restart of the routers keeps the records;
# an I2V job (its image kept in the result store) survives the kill of its router too.
. "$(dirname "$0")/itlib.sh"
py=/usr/bin/python3
[ -x "$py" ] || py=python3
state="$WANSERVE_HOME/local-cluster"

# one Generate at a time per router, so a second job waits in the router's queue ("queued")
if ! "$LC" up --routers 2 --expert-flags "--step-delay-ms 150" --router-flags "--http-listen \
    127.0.0.1:0 --max-inflight 1 --http-progress-ms 300 --drain-ms 20000" > "$T/up.log" 2>&1; then
  fail http_jobs_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
mapfile -t HS < <("$LC" status | sed -n 's/^http: //p')
check http_jobs_two_routers_listed test "${#HS[@]}" = 2 -a "$("$LC" status | grep -c '^router: ')" = 2
A=${HS[0]}
B=${HS[1]}
[ -n "$A" ] && [ -n "$B" ] || exit 1

# framemd5 of a video, without the header lines (they name the input)
cat > "$T/lib.py" << 'EOF'
import http.client, json, subprocess, sys, time, urllib.error, urllib.request

failed = 0
def check(name, ok, why=""):
    global failed
    print(("PASS " if ok else "FAIL ") + name + ("" if ok or not why else ": " + str(why)[:300]),
          flush=True)
    failed += 0 if ok else 1

def req(h, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    hd = dict(headers or {})
    if data is not None:
        hd["Content-Type"] = "application/json"
    r = urllib.request.Request("http://" + h + path, data=data, method=method, headers=hd)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()

def jreq(h, method, path, body=None, **kw):
    st, raw = req(h, method, path, body, **kw)
    try:
        return st, json.loads(raw)
    except ValueError:
        return st, {"raw": raw[:200]}

def wait_status(h, vid, want, secs=90):
    end, j = time.time() + secs, {}
    while time.time() < end:
        st, j = jreq(h, "GET", "/v1/videos/" + vid)
        if st == 200 and j.get("status") in want:
            return j
        time.sleep(0.2)
    return j

def sse(h, vid, timeout=120):
    c = http.client.HTTPConnection(h, timeout=timeout)
    c.request("GET", "/v1/videos/%s/events" % vid)
    r = c.getresponse()
    out, ev, data = [], None, []
    if r.status != 200:
        return [("bad-response", r.status)]
    while True:
        line = r.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line.startswith("event: "):
            ev = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and ev:
            out.append((ev, json.loads("\n".join(data))))
            ev, data = None, []
    return out

def frames(path):
    p = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "framemd5", "-"],
                       capture_output=True, text=True)
    return [l for l in p.stdout.splitlines() if l and not l.startswith("#")]

def download(h, vid, path):
    st, raw = req(h, "GET", "/v1/videos/%s/content" % vid)
    if st == 200:
        open(path, "wb").write(raw)
    return st, raw
EOF

# --- 1. made on A, read / streamed / downloaded / listed / cancelled / deleted through B
cat > "$T/cross.py" << 'EOF'
import sys, threading, time
sys.path.insert(0, sys.argv[3])
from lib import *
A, B, T = sys.argv[1], sys.argv[2], sys.argv[3]
job = {"prompt": "a lighthouse at dusk", "size": "64x64", "frames": 5, "steps": 6, "seed": 7}
st, j = jreq(A, "POST", "/v1/videos", job)
vid = j.get("id", "")
check("http_jobs_create_on_a", st == 200 and vid.startswith("video_"), j)
st, jb = jreq(B, "GET", "/v1/videos/" + vid)
check("http_jobs_get_on_b", st == 200 and jb.get("id") == vid and jb.get("seed") == 7, (st, jb))
ev = sse(B, vid)
names = [e for e, _ in ev]
check("http_jobs_sse_on_b_accepted_progress_done",
      names[:1] == ["accepted"] and "progress" in names and names[-1] == "done", names)
ja = wait_status(A, vid, ["completed"])
jb = wait_status(B, vid, ["completed"])
check("http_jobs_completed_on_both", ja.get("status") == jb.get("status") == "completed",
      (ja.get("status"), jb.get("status")))
sa, va = download(A, vid, T + "/cross_a.mp4")
sb, vb = download(B, vid, T + "/cross_b.mp4")
check("http_jobs_content_on_b_same_bytes", sa == sb == 200 and va == vb and len(vb) > 1000,
      (sa, sb, len(va), len(vb)))
st, part = req(B, "GET", "/v1/videos/%s/content" % vid, headers={"Range": "bytes=100-199"})
check("http_jobs_range_on_b_206", st == 206 and part == va[100:200], (st, len(part)))
st, lst = jreq(B, "GET", "/v1/videos?limit=50")
check("http_jobs_list_on_b_has_a_job", st == 200 and vid in [x["id"] for x in lst.get("data", [])])
# a long job on A cancelled through B
st, j = jreq(A, "POST", "/v1/videos", dict(job, steps=40, seed=8))
cid = j.get("id", "")
for _ in range(100):
    st, jj = jreq(A, "GET", "/v1/videos/" + cid)
    if jj.get("step", 0) >= 2:
        break
    time.sleep(0.1)
st, jd = jreq(B, "DELETE", "/v1/videos/" + cid)
ja = wait_status(A, cid, ["cancelled", "completed", "failed"], 30)
jb = wait_status(B, cid, ["cancelled", "completed", "failed"], 30)
check("http_jobs_cancel_through_b", st == 200 and ja.get("status") == "cancelled" and
      jb.get("status") == "cancelled" and ja.get("step", 99) < 40, (st, ja.get("status"),
      jb.get("status"), ja.get("step")))
# deleting the finished job through B forgets it on A too
st, jd = jreq(B, "DELETE", "/v1/videos/" + vid)
time.sleep(0.5)
sa, _ = jreq(A, "GET", "/v1/videos/" + vid)
sb, _ = jreq(B, "GET", "/v1/videos/" + vid)
check("http_jobs_delete_through_b_forgets_everywhere", st == 200 and jd.get("deleted") and
      sa == 404 and sb == 404, (st, jd, sa, sb))
sys.exit(1 if failed else 0)
EOF
$py "$T/cross.py" "$A" "$B" "$T"

# --- 1b. a router without the shared result store: B relays its videos (with Range)
etcd=$("$LC" status | sed -n 's/^etcd: //p')
setsid "$bin/wan-router" --etcd "$etcd" --id "router-nodir-$$" --addr-file "$T/nd.addr" \
  --http-listen 127.0.0.1:0 --http-addr-file "$T/nd.http" > "$T/router-nodir.log" 2>&1 < /dev/null &
ndpid=$!
for _ in $(seq 300); do [ -s "$T/nd.http" ] && break; sleep 0.1; done
cat > "$T/proxy.py" << 'EOF'
import sys
sys.path.insert(0, sys.argv[3])
from lib import *
D, B, T = sys.argv[1], sys.argv[2], sys.argv[3]
st, j = jreq(D, "POST", "/v1/videos", {"prompt": "no shared dir", "size": "64x64", "frames": 5,
                                       "steps": 4, "seed": 3})
vid = j.get("id", "x")
wait_status(B, vid, ["completed"])
sd, vd = download(D, vid, T + "/nd_d.mp4")
sb, vb = download(B, vid, T + "/nd_b.mp4")
check("http_jobs_no_shared_dir_content_relayed", sd == sb == 200 and vd == vb and len(vb) > 1000,
      (sd, sb, len(vd), len(vb), vb[:200]))
st, part = req(B, "GET", "/v1/videos/%s/content" % vid, headers={"Range": "bytes=10-59"})
check("http_jobs_no_shared_dir_range_relayed", st == 206 and part == vd[10:60], (st, len(part)))
sys.exit(1 if failed else 0)
EOF
$py "$T/proxy.py" "$(cat "$T/nd.http")" "$B" "$T"
kill -TERM "$ndpid"
wait "$ndpid"

# --- 2. kill -9 of A holding a finished, a running and two queued jobs
cat > "$T/kill.py" << 'EOF'
import json, os, signal, sys, threading, time
sys.path.insert(0, sys.argv[3])
from lib import *
A, B, T, apid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = {"prompt": "a red fox in snow", "size": "64x64", "frames": 5}
specs = {"finished": dict(base, steps=4, seed=11), "running": dict(base, steps=40, seed=12),
         "queued1": dict(base, steps=4, seed=13), "queued2": dict(base, steps=5)}  # random seed
ids, first = {}, {}
st, j = jreq(A, "POST", "/v1/videos", specs["finished"])
ids["finished"] = j.get("id")
wait_status(A, ids["finished"], ["completed"])
st, j = jreq(A, "POST", "/v1/videos", specs["running"])
ids["running"] = j.get("id")
def post(k):
    st, j = jreq(A, "POST", "/v1/videos", specs[k])
    ids[k], first[k] = j.get("id"), j.get("status")
th = [threading.Thread(target=post, args=(k,)) for k in ("queued1", "queued2")]
[t.start() for t in th]
[t.join() for t in th]
check("http_jobs_kill_setup_queued", first.get("queued1") == "queued" and
      first.get("queued2") == "queued", first)
st, j = jreq(B, "GET", "/v1/videos/" + ids["running"])
check("http_jobs_kill_setup_running", j.get("status") == "in_progress", j.get("status"))
os.kill(apid, signal.SIGKILL)
t0 = time.time()
final = {k: wait_status(B, v, ["completed", "failed", "cancelled"], 120) for k, v in ids.items()}
check("http_jobs_kill9_all_complete_via_b",
      all(f.get("status") == "completed" for f in final.values()),
      {k: (f.get("status"), f.get("error")) for k, f in final.items()})
check("http_jobs_kill9_taken_over", all(final[k].get("runs", 1) >= 2 for k in
      ("running", "queued1", "queued2")) and final["finished"].get("runs", 1) == 1,
      {k: f.get("runs") for k, f in final.items()})
seed2 = final["queued2"].get("seed")
json.dump({"ids": ids, "seed2": seed2, "takeover_s": time.time() - t0},
          open(T + "/kill.json", "w"))
# the undisturbed runs, on B, of the same requests (queued2 with the seed it was given)
same = True
why = {}
for k, spec in specs.items():
    if k == "queued2":
        spec = dict(spec, seed=seed2)
    st, j = jreq(B, "POST", "/v1/videos", spec)
    ref = wait_status(B, j.get("id", "x"), ["completed"])
    download(B, ref.get("id", "x"), T + "/ref_%s.mp4" % k)
    download(B, ids[k], T + "/got_%s.mp4" % k)
    fa, fb = frames(T + "/ref_%s.mp4" % k), frames(T + "/got_%s.mp4" % k)
    why[k] = (len(fa), len(fb))
    same = same and len(fa) == 5 and fa == fb
check("http_jobs_kill9_same_frames_as_undisturbed", same, why)
sys.exit(1 if failed else 0)
EOF
apid=$(awk '$1 == "router" {print $2}' "$state/procs")
$py "$T/kill.py" "$A" "$B" "$T" "$apid"

# wanctl generate with the local cluster's first router gone: the resend goes to the next router
# registered in etcd
"$bin/wanctl" generate --size 64x64 --frames 5 --steps 3 --seed 9 --prompt "next router" \
  --out "$T/wanctl.mp4" > "$T/wanctl.out" 2> "$T/wanctl.err"
wrc=$?
if [ $wrc -eq 0 ] && grep -q "sending the request again .* to " "$T/wanctl.err" && [ -s "$T/wanctl.mp4" ]; then
  pass http_jobs_wanctl_tries_next_router
else
  fail http_jobs_wanctl_tries_next_router "rc $wrc: $(tail -n 2 "$T/wanctl.err")"
fi

# --- 3. SIGTERM of a router with running HTTP jobs: none fails
"$LC" add router > "$T/add.log" 2>&1
check http_jobs_add_router test "$("$LC" status | grep -c '^http: ')" = 3
C=$("$LC" status | sed -n 's/^http: //p' | tail -n 1)
cpid=$(awk '$1 == "router-2" {print $2}' "$state/procs")
cat > "$T/term.py" << 'EOF'
import os, signal, sys, threading, time
sys.path.insert(0, sys.argv[3])
from lib import *
C, B, T, cpid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ids = []
def post(i):
    st, j = jreq(C, "POST", "/v1/videos", {"prompt": "rain %d" % i, "size": "64x64", "frames": 5,
                                           "steps": 12, "seed": 40 + i})
    ids.append(j.get("id"))
th = [threading.Thread(target=post, args=(i,)) for i in range(2)]
[t.start() for t in th]
time.sleep(1.0)  # one runs, the other waits in C's queue (--max-inflight 1)
os.kill(cpid, signal.SIGTERM)
[t.join() for t in th]
final = [wait_status(B, v or "x", ["completed", "failed", "cancelled"], 120) for v in ids]
check("http_jobs_sigterm_none_fails", len(ids) == 2 and
      all(f.get("status") == "completed" for f in final),
      [(f.get("status"), f.get("error")) for f in final])
sys.exit(1 if failed else 0)
EOF
$py "$T/term.py" "$C" "$B" "$T" "$cpid"
for _ in $(seq 100); do kill -0 "$cpid" 2> /dev/null || break; sleep 0.2; done
check http_jobs_sigterm_router_exited sh -c "! kill -0 $cpid 2> /dev/null"

# --- 4. etcd restarted mid-job: the job goes on and its record ends completed
cat > "$T/etcd.py" << 'EOF'
import subprocess, sys, time
sys.path.insert(0, sys.argv[3])
from lib import *
B, LC, T = sys.argv[1], sys.argv[2], sys.argv[3]
st, j = jreq(B, "POST", "/v1/videos", {"prompt": "etcd drill", "size": "64x64", "frames": 5,
                                       "steps": 24, "seed": 5})
vid = j.get("id", "x")
time.sleep(0.8)
subprocess.run([LC, "etcd-stop"], capture_output=True)
time.sleep(2.5)
subprocess.run([LC, "etcd-start"], capture_output=True)
f = wait_status(B, vid, ["completed", "failed", "cancelled"], 90)
check("http_jobs_etcd_restart_job_completes", f.get("status") == "completed", f)
time.sleep(1.5)  # the record catches up once etcd is back
st, j2 = jreq(B, "GET", "/v1/videos?limit=100")
rec = [x for x in j2.get("data", []) if x["id"] == vid]
check("http_jobs_etcd_restart_record_completed", rec and rec[0]["status"] == "completed", rec)
open(T + "/etcd_vid", "w").write(vid)
sys.exit(1 if failed else 0)
EOF
$py "$T/etcd.py" "$B" "$LC" "$T"

# --- 5. all routers stopped and started again (same etcd, same results dir): records stay
fid=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["ids"]["finished"])' "$T/kill.json")
restart=()
while read -r name pid _; do
  case $name in router*) ;; *) continue ;; esac
  kill -0 "$pid" 2> /dev/null || continue
  mapfile -d '' args < "/proc/$pid/cmdline"
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  restart+=("$name")
  printf '%s\0' "${args[@]}" > "$T/args-$name"
done < "$state/procs"
for name in "${restart[@]}"; do
  mapfile -d '' args < "$T/args-$name"
  rm -f "$state/$name.addr" "$state/http${name#router}.addr"
  setsid "${args[@]}" >> "$state/logs/$name.log" 2>&1 < /dev/null &
  echo "$name $! $state/$name.addr" >> "$state/procs"
done
for _ in $(seq 100); do
  [ "$("$LC" status | grep -c ' running ')" -ge 6 ] && [ -s "$state/http-1.addr" ] && break
  sleep 0.2
done
B2=$(cat "$state/http-1.addr")
code=$(curl -sS -o "$T/after.json" -w '%{http_code}' "http://$B2/v1/videos/$fid")
check http_jobs_record_survives_full_restart test "$code" = 200 -a \
  -n "$(grep -o '"status":"completed"' "$T/after.json")"
curl -sS -o "$T/after.mp4" "http://$B2/v1/videos/$fid/content"
check http_jobs_video_survives_full_restart cmp -s "$T/after.mp4" "$T/got_finished.mp4"

# --- 6. I2V: the input image waits in the result store, so the job survives its router too
"$LC" down > /dev/null
"$bin/wanctl" make-tiny-model "$T/i2v-model" --i2v > /dev/null
ffmpeg -v error -f lavfi -i testsrc=size=80x48 -frames:v 1 "$T/img.png"
if ! "$LC" up --routers 2 --model "$T/i2v-model" --expert-flags "--step-delay-ms 150" \
    --router-flags "--http-listen 127.0.0.1:0" > "$T/up-i2v.log" 2>&1; then
  fail http_jobs_i2v_cluster_up "$(tail -n 5 "$T/up-i2v.log")"
  exit 1
fi
mapfile -t HS < <("$LC" status | sed -n 's/^http: //p')
cat > "$T/i2v.py" << 'EOF'
import base64, os, signal, sys, time
sys.path.insert(0, sys.argv[3])
from lib import *
A, B, T, apid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
img = base64.b64encode(open(T + "/img.png", "rb").read()).decode()
job = {"prompt": "it moves", "image": img, "size": "64x48", "frames": 5, "steps": 30, "seed": 17}
st, j = jreq(A, "POST", "/v1/videos", job)
vid = j.get("id", "x")
for _ in range(100):
    st, jj = jreq(B, "GET", "/v1/videos/" + vid)
    if jj.get("step", 0) >= 2:
        break
    time.sleep(0.1)
os.kill(apid, signal.SIGKILL)
f = wait_status(B, vid, ["completed", "failed", "cancelled"], 120)
check("http_jobs_i2v_taken_over_completes", f.get("status") == "completed" and
      f.get("runs", 1) >= 2 and f.get("task") == "i2v", (f.get("status"), f.get("runs"),
      f.get("error")))
st, j = jreq(B, "POST", "/v1/videos", job)
ref = wait_status(B, j.get("id", "x"), ["completed"])
download(B, vid, T + "/i2v_got.mp4")
download(B, ref.get("id", "x"), T + "/i2v_ref.mp4")
fa, fb = frames(T + "/i2v_ref.mp4"), frames(T + "/i2v_got.mp4")
check("http_jobs_i2v_same_frames_as_undisturbed", len(fa) == 5 and fa == fb, (len(fa), len(fb)))
sys.exit(1 if failed else 0)
EOF
$py "$T/i2v.py" "${HS[0]}" "${HS[1]}" "$T" "$(awk '$1 == "router" {print $2}' "$state/procs")"
