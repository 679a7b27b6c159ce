#!/usr/bin/env bash
# Slow or silent clients (issue 19, item 5) on a real local cluster (router --max-inflight 2,
# --send-stall-ms 2000, --http-listen):
#  - two Generate streams opened by Python's grpcio and never read (a 768x768 latent does not
#    fit the HTTP/2 window) must not hold both slots: the router ends them once its send has
#    stalled for 2 s, and a third request gets served;
#  - 300 slow-loris connections (headers never finished) from 127.0.0.2 must not lock the page
#    out for others: the gateway caps connections per client address (--http-max-conns-per-ip),
#    and a connection whose headers stop coming is closed after 10 s idle.
# Prints PASS/FAIL per check.
. "$(dirname "$0")/itlib.sh"
py=/usr/bin/python3
[ -x "$py" ] || py=python3
pypid=""
cleanup() {
  [ -n "$pypid" ] && kill -TERM "$pypid" 2> /dev/null && wait "$pypid" 2> /dev/null
  it_cleanup
}
trap cleanup EXIT
if ! "$LC" up --router-flags "--max-inflight 2 --send-stall-ms 2000 --http-listen 127.0.0.1:0" \
    > "$T/up.log" 2>&1; then
  fail slow_clients_cluster_up "$(tail -n 5 "$T/up.log")"
  exit 1
fi
pass slow_clients_cluster_up
R=$("$LC" status | sed -n 's/^router: //p')
H=$("$LC" status | sed -n 's/^http: //p')

# --- two silent Generate clients (raw GenerateRequest bytes: t2v, prompt, 768x768, 1 frame,
# 2 steps, return_latent: a 590 KB latent event), held open for 60 s without reading anything
"$py" - "$R" > "$T/silent.log" 2>&1 << 'EOF' &
import sys, time, grpc
# no BDP probing and a 16 KiB stream window: the transport only takes what the reader asks for
ch = grpc.insecure_channel(sys.argv[1], options=[("grpc.http2.bdp_probe", 0),
                                                 ("grpc.http2.lookahead_bytes", 16384)])
grpc.channel_ready_future(ch).result(timeout=30)
req = (bytes([0x10, 1, 0x1a, 6]) + b"silent" +
       bytes([0x30, 0x80, 6, 0x38, 0x80, 6, 0x40, 1, 0x48, 2, 0x90, 1, 1]))
gen = ch.unary_stream("/wanserve.v1.Router/Generate", request_serializer=None,
                      response_deserializer=None)
calls = [gen(req, timeout=120) for _ in range(2)]
print("opened", flush=True)
time.sleep(60)
EOF
pypid=$!
for _ in $(seq 100); do grep -q opened "$T/silent.log" && break; sleep 0.1; done
sleep 1
timeout 60 "$bin/wanctl" generate --size 64x64 --frames 9 --steps 4 --prompt "after the silent ones" \
  --deadline-ms 45000 --out "$T/third.mp4" > /dev/null 2> "$T/third.err"
check slow_clients_silent_streams_release_their_slots test $? -eq 0 -a -s "$T/third.mp4"
check slow_clients_stall_logged grep -q "took no message for 2000 ms" \
  "$WANSERVE_HOME/local-cluster/logs/router.log"

# --- slow loris from another loopback address; the page must still answer 127.0.0.1
"$py" - "$H" << 'EOF'
import socket, sys, time, urllib.request
host, port = sys.argv[1].rsplit(":", 1)
held = []
for _ in range(300):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.bind(("127.0.0.2", 0))
        s.connect((host, int(port)))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        held.append(s)
    except OSError:
        s.close()
try:
    with urllib.request.urlopen("http://%s/" % sys.argv[1], timeout=10) as r:
        ok = r.status == 200
except Exception as e:
    ok = False
    print("  page: %s" % e)
print(("PASS" if ok else "FAIL") + " slow_clients_page_served_during_slow_loris")
for s in held:
    s.close()
# a connection whose headers stop coming is closed after ~10 s idle (not the 120 s of a request)
s = socket.create_connection((host, int(port)), timeout=30)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
t0 = time.time()
try:
    closed = s.recv(1) == b""
except OSError:
    closed = True
dt = time.time() - t0
print(("PASS" if closed and dt < 20 else "FAIL") +
      " slow_clients_unfinished_headers_closed (after %.1f s)" % dt)
EOF
