#!/usr/bin/env bash
# Black-box tests of the router's HTTP gateway (issue 11): a local cluster (real binaries, real
# etcd) with --http-listen, driven by Python's urllib/http.client (a client we did not write),
# curl for the byte ranges, ffprobe/ffmpeg to check the videos. Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
py=/usr/bin/python3
[ -x "$py" ] || py=python3

# slow steps (30 ms) so a cancel lands mid-way; finished jobs kept 12 s so eviction is testable
if ! "$LC" up --expert-flags "--step-delay-ms 30" --router-flags "--http-listen 127.0.0.1:0 \
    --http-keep-s 12 --http-max-body-mb 1 --max-inflight 4" > "$T/up.log" 2>&1; then
  fail http_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
H=$("$LC" status | sed -n 's/^http: //p')
check http_cluster_up test -n "$H"
[ -n "$H" ] || exit 1

# --- the API, through urllib / http.client
cat > "$T/api.py" << 'EOF'
import base64, http.client, json, os, subprocess, sys, time, traceback, urllib.error
import urllib.request

H, T = sys.argv[1], sys.argv[2]
BASE = "http://" + H
failed = 0

def check(name, ok, why=""):
    global failed
    print(("PASS " if ok else "FAIL ") + name + ("" if ok or not why else ": " + str(why)[:300]),
          flush=True)
    failed += 0 if ok else 1

def req(method, path, body=None, ctype="application/json", headers=None):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    h = dict(headers or {})
    if data is not None:
        h["Content-Type"] = ctype
    r = urllib.request.Request(BASE + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()

def jreq(method, path, body=None, **kw):
    st, hd, raw = req(method, path, body, **kw)
    try:
        return st, json.loads(raw)
    except ValueError:
        return st, {"raw": raw[:200]}

def sse(vid, timeout=120):
    """Reads /v1/videos/{id}/events to its end: [(event, data)]."""
    c = http.client.HTTPConnection(H, timeout=timeout)
    c.request("GET", "/v1/videos/%s/events" % vid)
    r = c.getresponse()
    out, ev, data = [], None, []
    if r.status != 200 or not r.getheader("Content-Type", "").startswith("text/event-stream"):
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
    c.close()
    return out

def wait_status(vid, want, secs=60):
    end = time.time() + secs
    while time.time() < end:
        st, j = jreq("GET", "/v1/videos/" + vid)
        if st != 200 or j.get("status") in want:
            return j
        time.sleep(0.05)
    return j

def main():
    # /v1/models: the roles, versions and live replicas of the etcd view
    st, m = jreq("GET", "/v1/models")
    roles = {r["id"]: r for r in m.get("data", [])}
    check("http_models_lists_live_replicas", st == 200 and all(
        roles.get(k, {}).get("live", 0) >= 1 and roles[k]["versions"].get("v1") == len(roles[k]["replicas"])
        for k in ("encoder", "expert-high", "expert-low", "decoder", "router")), m)

    # create -> SSE -> poll -> content
    body = {"prompt": "a red fox walks through snow", "size": "64x64", "frames": 9, "steps": 12,
            "seed": 7}
    st, job = jreq("POST", "/v1/videos", body)
    vid = job.get("id", "")
    check("http_create_returns_job", st == 200 and vid.startswith("video_") and
          job.get("object") == "video" and job.get("status") in ("queued", "in_progress"), job)
    evs = sse(vid)
    names = [e for e, _ in evs]
    steps = [d["step"] for e, d in evs if e == "progress"]
    check("http_sse_accepted_then_one_progress_per_step_then_done",
          names[:1] == ["accepted"] and steps == list(range(1, 13)) and names[-1] == "done" and
          len(names) == 14, names)
    prog = [d for e, d in evs if e == "progress"]
    check("http_sse_progress_names_pool_and_replica",
          {p["role"] for p in prog} == {"expert-high", "expert-low"} and
          all(p["replica"].startswith(p["role"]) and p["version"] == "v1" and p["total"] == 12 and
              0 <= p["progress"] < 100 for p in prog), prog[:2])
    j = wait_status(vid, ("completed", "failed", "cancelled"))
    check("http_poll_completed", j.get("status") == "completed" and j.get("progress") == 100 and
          len(j.get("timeline", [])) == 12 and j.get("content_url") == "/v1/videos/%s/content" % vid, j)
    first_done = time.time()
    st, hd, mp4 = req("GET", "/v1/videos/%s/content" % vid)
    open(os.path.join(T, "http.mp4"), "wb").write(mp4)
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                            "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of",
                            "csv=p=0", os.path.join(T, "http.mp4")], capture_output=True, text=True)
    check("http_content_is_mp4_per_ffprobe", st == 200 and hd.get("Content-Type") == "video/mp4" and
          hd.get("Accept-Ranges") == "bytes" and probe.stdout.strip() == "h264,64,64,9",
          (st, hd.get("Content-Type"), probe.stdout, probe.stderr))
    check("http_content_length_matches", len(mp4) == j.get("bytes"), (len(mp4), j.get("bytes")))
    st, hd, part = req("GET", "/v1/videos/%s/content" % vid, headers={"Range": "bytes=100-1099"})
    check("http_range_206", st == 206 and part == mp4[100:1100] and
          hd.get("Content-Range") == "bytes 100-1099/%d" % len(mp4), (st, hd.get("Content-Range")))
    st, hd, part = req("GET", "/v1/videos/%s/content" % vid, headers={"Range": "bytes=-500"})
    check("http_range_suffix_206", st == 206 and part == mp4[-500:], (st, len(part)))
    st, hd, part = req("GET", "/v1/videos/%s/content" % vid, headers={"Range": "bytes=%d-" % len(mp4)})
    check("http_range_unsatisfiable_416", st == 416 and hd.get("Content-Range") == "bytes */%d" % len(mp4),
          (st, hd.get("Content-Range")))
    open(os.path.join(T, "vid1"), "w").write(vid)

    st, lst = jreq("GET", "/v1/videos")
    check("http_list_recent_jobs", st == 200 and lst.get("object") == "list" and
          lst["data"] and lst["data"][0]["id"] == vid, lst)

    # multipart form (curl -F style) goes through the same path
    boundary = "wanservetestboundary"
    parts = [("prompt", "form fox"), ("size", "64x64"), ("frames", "9"), ("steps", "4"), ("seed", "3")]
    mb = b"".join(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" %
                   (boundary, k, v)).encode() for k, v in parts) + ("--%s--\r\n" % boundary).encode()
    st, fj = jreq("POST", "/v1/videos", mb, ctype="multipart/form-data; boundary=" + boundary)
    fj = wait_status(fj.get("id", "x"), ("completed", "failed", "cancelled")) if st == 200 else fj
    check("http_multipart_form_completes", st == 200 and fj.get("status") == "completed" and
          fj.get("size") == "64x64" and fj.get("total") == 4, (st, fj))

    # cancel mid-way: DELETE after a few steps; the router stops at the next step boundary
    st, cj = jreq("POST", "/v1/videos", {"prompt": "a long one", "size": "64x64", "frames": 9,
                                          "steps": 200})
    cid = cj.get("id", "x")
    c = http.client.HTTPConnection(H, timeout=60)
    c.request("GET", "/v1/videos/%s/events" % cid)
    r = c.getresponse()
    seen, cancelled_ev, dst, dj = 0, None, 0, {}
    while True:
        line = r.readline().decode()
        if not line:
            break
        if line.startswith("event: progress"):
            seen += 1
            if seen == 3:
                dst, dj = jreq("DELETE", "/v1/videos/" + cid)
        if line.startswith("event: error"):
            cancelled_ev = json.loads(r.readline().decode()[6:])
    c.close()
    check("http_delete_cancels_mid_way", seen >= 3 and dst == 200 and dj.get("status") == "cancelled"
          and dj["error"]["code"] == "CANCELLED" and 3 <= dj.get("step", 0) < 200, (seen, dj))
    check("http_sse_ends_with_error_event_on_cancel",
          cancelled_ev is not None and cancelled_ev.get("status") == "cancelled", cancelled_ev)
    st, e = jreq("GET", "/v1/videos/%s/content" % cid)
    check("http_content_of_cancelled_is_409", st == 409 and
          e.get("error", {}).get("code") == "FAILED_PRECONDITION", (st, e))
    st, e = jreq("DELETE", "/v1/videos/" + cid)
    st2, _ = jreq("GET", "/v1/videos/" + cid)
    check("http_delete_finished_forgets_it", st == 200 and e.get("deleted") is True and st2 == 404,
          (st, e, st2))

    # bad requests: 400 with a JSON error naming the problem (ours, or the router's own message)
    def bad(name, body, want_code, want_in, status=400):
        try:
            st, e = jreq("POST", "/v1/videos", body)
        except Exception as ex:  # a client-side failure is this check failing, not the script
            check(name, False, ex)
            return
        err = e.get("error", {})
        check(name, st == status and err.get("code") == want_code and want_in in err.get("message", ""),
              (st, e))

    bad("http_bad_json_400", b'{"prompt": "x",', "INVALID_ARGUMENT", "invalid JSON")
    bad("http_body_not_object_400", b'[1, 2]', "INVALID_ARGUMENT", "JSON object")
    bad("http_missing_prompt_400", {"size": "64x64"}, "INVALID_ARGUMENT", "prompt")
    bad("http_bad_type_400", {"prompt": "x", "steps": "many"}, "INVALID_ARGUMENT", "steps")
    bad("http_unknown_field_400", {"prompt": "x", "colour": "red"}, "INVALID_ARGUMENT", "colour")
    bad("http_bad_size_400", {"prompt": "x", "size": "big"}, "INVALID_ARGUMENT", "size")
    bad("http_bad_solver_400", {"prompt": "x", "solver": "euler9"}, "INVALID_ARGUMENT", "solver")
    bad("http_bad_base64_400", {"prompt": "x", "image": "***"}, "INVALID_ARGUMENT", "image")
    # checked by the router (the same messages as the gRPC API)
    bad("http_router_frames_4n1_400", {"prompt": "x", "size": "64x64", "frames": 10},
        "INVALID_ARGUMENT", "frames")
    bad("http_router_steps_limit_400", {"prompt": "x", "size": "64x64", "frames": 9, "steps": 900},
        "INVALID_ARGUMENT", "steps")
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n not really").decode()
    bad("http_router_image_for_t2v_400", {"prompt": "x", "size": "64x64", "frames": 9, "task": "t2v",
                                          "image": png}, "INVALID_ARGUMENT", "image")
    bad("http_body_too_large_413", b'{"prompt": "' + b"x" * (1 << 20) + b'"}', "RESOURCE_EXHAUSTED",
        "max-body", status=413)
    # input hygiene (issue 19, item 8): JSON types are strict, NUL and malformed UTF-8 are refused
    bad("http_number_as_string_400", {"prompt": "x", "frames": "9"}, "INVALID_ARGUMENT", "frames")
    bad("http_nul_in_prompt_400", b'{"prompt": "a red\\u0000 fox"}', "INVALID_ARGUMENT", "NUL")
    st, hd, raw = req("POST", "/v1/videos", b'{"prompt": "x", "size": "\xff\xfe64"}')
    try:
        raw.decode("utf-8")
        utf8_reply = True
    except UnicodeDecodeError:
        utf8_reply = False
    check("http_invalid_utf8_400_not_echoed", st == 400 and utf8_reply and b"UTF-8" in raw, (st, raw))
    # a broken image is refused when the job is submitted (the encoder decodes it before the
    # router accepts the request), not reported later as a failed job
    bad("http_corrupt_image_400", {"prompt": "x", "size": "64x64", "frames": 9, "steps": 4,
                                   "image": "data:image/png;base64," + png}, "INVALID_ARGUMENT",
        "image")
    # a failed job reports its gRPC code: a real image for a T2V cluster passes the encoder, and
    # every T2V expert refuses the condition
    def tiny_png():
        import struct, zlib
        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
        rows = b"".join(b"\x00" + b"\x80\x40\x20" * 16 for _ in range(16))
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    good = base64.b64encode(tiny_png()).decode()
    st, ij = jreq("POST", "/v1/videos", {"prompt": "x", "size": "64x64", "frames": 9, "steps": 4,
                                          "image": good})
    ij = wait_status(ij.get("id", "x"), ("completed", "failed", "cancelled")) if st == 200 else ij
    check("http_failed_job_reports_grpc_code", ij.get("status") == "failed" and ij.get("task") == "i2v"
          and ij.get("error", {}).get("code") == "INVALID_ARGUMENT" and ij["error"]["message"], ij)

    # the gateway's metrics (issue 19, item 9), on the router's Prometheus endpoint
    raw = open(os.path.join(os.environ["WANSERVE_HOME"], "local-cluster", "router.addr.metrics")).read().strip()
    m = urllib.request.urlopen("http://%s/metrics" % raw, timeout=10).read().decode()
    def metric(series):
        return sum(float(l.rsplit(" ", 1)[1]) for l in m.splitlines() if l.startswith(series))
    check("http_metrics_responses_by_code", metric('wanserve_http_responses_total{code="200"}') >= 3
          and metric('wanserve_http_responses_total{code="400"}') >= 5, m[:0])
    check("http_metrics_jobs_by_state", metric('wanserve_http_jobs{state="failed"}') >= 1 and
          'wanserve_http_jobs{state="completed"}' in m, [l for l in m.splitlines() if "http_jobs" in l])
    check("http_metrics_sse_clients", "wanserve_http_sse_clients " in m)

    st, e = jreq("GET", "/v1/videos/video_0000")
    check("http_unknown_video_404", st == 404 and e["error"]["code"] == "NOT_FOUND", (st, e))
    st, hd, _ = req("PUT", "/v1/videos", b"{}")
    check("http_wrong_method_405", st == 405 and "POST" in hd.get("Allow", ""), (st, hd))

    # the page and its files, from the binary
    st, hd, page = req("GET", "/")
    st2, hd2, js = req("GET", "/app.js")
    st3, hd3, css = req("GET", "/style.css")
    check("http_page_served", st == 200 and b"<title>wanserve" in page and
          hd.get("Content-Type", "").startswith("text/html") and st2 == 200 and
          b"EventSource" in js and "javascript" in hd2.get("Content-Type", "") and st3 == 200, (st, st2, st3))

    # eviction: finished jobs are kept --http-keep-s (12 s) after they end, then forgotten
    time.sleep(max(0, first_done + 13 - time.time()))
    st, _ = jreq("GET", "/v1/videos/" + vid)
    st2, lst = jreq("GET", "/v1/videos")
    check("http_finished_job_evicted_after_keep_s", st == 404 and
          all(x["id"] != vid for x in lst.get("data", [])), st)

try:
    main()
except Exception:
    check("http_api_script_ran_to_the_end", False, traceback.format_exc().splitlines()[-1])
sys.exit(1 if failed else 0)
EOF
"$py" "$T/api.py" "$H" "$T"

# --- the same request over gRPC (wanctl) gives the same frames: one pipeline, not two
vid=$(cat "$T/vid1" 2>/dev/null)
"$bin/wanctl" generate --size 64x64 --frames 9 --steps 12 --seed 7 \
  --prompt "a red fox walks through snow" --out "$T/grpc.mp4" > /dev/null 2> "$T/grpc.err"
fm() { ffmpeg -v error -i "$1" -f framemd5 - 2>/dev/null | grep -v '^#'; }
check http_same_frames_as_grpc test -n "$vid" -a "$(fm "$T/http.mp4" | wc -l)" = 9 -a \
  "$(fm "$T/http.mp4" | md5sum)" = "$(fm "$T/grpc.mp4" | md5sum)"

# --- curl walk-through of docs/http-api.md: create, poll, download with a range
curl_job() { # BODY: POST it, wait (60 s) until completed; prints the job id ("" on failure)
  local job id
  job=$(curl -sS -X POST "http://$H/v1/videos" -H 'Content-Type: application/json' -d "$1")
  id=$(echo "$job" | sed -n 's/.*"id":"\(video_[0-9a-f]*\)".*/\1/p')
  for _ in $(seq 600); do
    [ -n "$id" ] || break
    curl -sS "http://$H/v1/videos/$id" | grep -q '"status":"completed"' && break
    sleep 0.1
  done
  echo "$id"
}
id=$(curl_job '{"prompt": "curl fox", "size": "64x64", "frames": 9, "steps": 4}')
code=$(curl -sS -o "$T/curl.part" -w '%{http_code}' -r 0-99 "http://$H/v1/videos/$id/content")
check http_curl_walkthrough test -n "$id" -a "$code" = 206 -a "$(stat -c %s "$T/curl.part" 2>/dev/null)" = 100

# --- that job had no seed: the router drew one and reports it, so the video can be made again
seed=$(curl -sS "http://$H/v1/videos/$id" | sed -n 's/.*"seed":\([0-9]*\).*/\1/p')
curl -sS -o "$T/seed1.mp4" "http://$H/v1/videos/$id/content"
id2=$(curl_job "{\"prompt\": \"curl fox\", \"size\": \"64x64\", \"frames\": 9, \"steps\": 4, \"seed\": ${seed:-0}}")
curl -sS -o "$T/seed2.mp4" "http://$H/v1/videos/$id2/content"
if [ -n "$seed" ] && [ -n "$id2" ] && [ -s "$T/seed1.mp4" ] &&
   [ "$(md5sum < "$T/seed1.mp4")" = "$(md5sum < "$T/seed2.mp4" 2> /dev/null)" ]; then
  pass http_random_seed_reported_and_reproducible
else
  fail http_random_seed_reported_and_reproducible "seed '$seed', jobs '$id' '$id2': $(curl -sS "http://$H/v1/videos/$id2" | cut -c1-300)"
fi

# --- same auth as gRPC: a second router with --auth-tokens (when this build has it, issue 9)
if strings "$bin/wan-router" | grep -q -- "--auth-tokens"; then
  # a 700-byte JWT-like token and one of the 8 KiB limit work whole; the tail of a 1032-byte
  # line ("SUFFIXTOK") must never be a token of its own (issue 19, item 1)
  LONGTOK=$(head -c 8192 /dev/zero | tr '\0' 'k')
  JWT=$(head -c 700 /dev/zero | tr '\0' 'j')
  SPLIT="$(head -c 1023 /dev/zero | tr '\0' 's')SUFFIXTOK"
  printf 'good-token\n%s\n%s\n%s\n' "$LONGTOK" "$JWT" "$SPLIT" > "$T/tokens"
  etcd=$("$LC" status | sed -n 's/^etcd: //p')
  setsid "$bin/wan-router" --etcd "$etcd" --id "router-auth-$$" --addr-file "$T/ra.addr" \
    --auth-tokens "$T/tokens" --http-listen 127.0.0.1:0 --http-addr-file "$T/ha.addr" \
    > "$T/router-auth.log" 2>&1 < /dev/null &
  apid=$!
  for _ in $(seq 300); do [ -s "$T/ha.addr" ] && break; sleep 0.1; done
  A="http://$(cat "$T/ha.addr" 2>/dev/null)"
  B='{"prompt": "secret fox", "size": "64x64", "frames": 9, "steps": 4}'
  code=$(curl -sS -o "$T/a1.json" -w '%{http_code}' -X POST "$A/v1/videos" -d "$B")
  check http_auth_no_token_401 test "$code" = 401 -a -n "$(grep -o UNAUTHENTICATED "$T/a1.json")"
  code=$(curl -sS -o "$T/a2.json" -w '%{http_code}' -X POST "$A/v1/videos" -d "$B" \
    -H 'Authorization: Bearer wrong')
  check http_auth_wrong_token_401 test "$code" = 401
  code=$(curl -sS -o "$T/a3.json" -w '%{http_code}' -X POST "$A/v1/videos" -d "$B" \
    -H 'Authorization: Bearer good-token')
  aid=$(sed -n 's/.*"id":"\(video_[0-9a-f]*\)".*/\1/p' "$T/a3.json")
  for _ in $(seq 200); do
    curl -sS "$A/v1/videos/$aid?access_token=good-token" | grep -q '"status":"completed"' && break
    sleep 0.1
  done
  c_none=$(curl -sS -o /dev/null -w '%{http_code}' "$A/v1/videos/$aid")
  c_hdr=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer good-token' \
    "$A/v1/videos/$aid")
  c_q=$(curl -sS -o "$T/auth.mp4" -w '%{http_code}' "$A/v1/videos/$aid/content?access_token=good-token")
  check http_auth_good_token_creates test "$code" = 200 -a -n "$aid"
  check http_auth_job_hidden_without_token test "$c_none" = 404 -a "$c_hdr" = 200
  check http_auth_access_token_query_for_video test "$c_q" = 200 -a -s "$T/auth.mp4"
  m_none=$(curl -sS -o /dev/null -w '%{http_code}' "$A/v1/models")
  m_bad=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer good-tokenx' "$A/v1/models")
  m_good=$(curl -sS -o "$T/models.json" -w '%{http_code}' -H 'Authorization: Bearer good-token' "$A/v1/models")
  check http_auth_models_needs_token test "$m_none" = 401 -a "$m_bad" = 401 -a "$m_good" = 200 -a \
    -n "$(grep -o expert-low "$T/models.json")"
  c_long=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $LONGTOK" "$A/v1/models")
  c_jwt=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $JWT" "$A/v1/models")
  c_split=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $SPLIT" "$A/v1/models")
  c_frag=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer SUFFIXTOK" "$A/v1/models")
  c_over=$(curl -sS -o "$T/over.json" -w '%{http_code}' -H "Authorization: Bearer ${LONGTOK}k" "$A/v1/models")
  check http_auth_long_tokens_whole test "$c_long" = 200 -a "$c_jwt" = 200 -a "$c_split" = 200
  check http_auth_no_fragment_token test "$c_frag" = 401 -a "$c_over" = 401
  code=$(curl -sS -o "$T/a4.json" -w '%{http_code}' -X POST "$A/v1/videos" -d "$B" \
    -H "Authorization: Bearer $LONGTOK")
  lid=$(sed -n 's/.*"id":"\(video_[0-9a-f]*\)".*/\1/p' "$T/a4.json")
  for _ in $(seq 200); do
    curl -sS -H "Authorization: Bearer $LONGTOK" "$A/v1/videos/$lid" | grep -q '"status":"completed"' && break
    sleep 0.1
  done
  check http_auth_long_token_job_completes test "$code" = 200 -a -n "$lid" -a -n \
    "$(curl -sS -H "Authorization: Bearer $LONGTOK" "$A/v1/videos/$lid" | grep -o '"status":"completed"')"
  check http_auth_page_stays_open test "$(curl -sS -o /dev/null -w '%{http_code}' "$A/")" = 200
  kill -TERM "$apid" 2>/dev/null
  wait "$apid" 2>/dev/null
fi

# --- the router survived everything, and stops cleanly (no stuck SSE or job threads)
rpid=$(awk '$1 == "router" {print $2}' "$WANSERVE_HOME/local-cluster/procs")
check http_router_alive kill -0 "$rpid"
curl -sN "http://$H/v1/videos/$id/events" > /dev/null &
cpid=$!
kill -TERM "$rpid"
stopped=1
for _ in $(seq 100); do kill -0 "$rpid" 2>/dev/null || { stopped=0; break; }; sleep 0.1; done
check http_router_stops_within_10s test $stopped -eq 0
kill "$cpid" 2>/dev/null
wait "$cpid" 2>/dev/null
grep -q "double free\|Sanitizer\|runtime error" "$WANSERVE_HOME/local-cluster/logs/router.log" \
  && fail http_router_log_clean "$(grep -m1 "double free\|Sanitizer\|runtime error" \
    "$WANSERVE_HOME/local-cluster/logs/router.log")" || pass http_router_log_clean
