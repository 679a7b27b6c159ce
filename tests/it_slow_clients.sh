#!/usr/bin/env bash
# Slow or silent clients (issue 19, item 5) on a real local cluster (router --max-inflight 2,
# --send-stall-ms 2000, --http-listen):
#  - two Generate streams opened by Python's grpcio and never read (a 768x768 latent does not
#    fit the HTTP/2 window) must not hold both slots: the router ends them once its send has
#    stalled for 2 s, and a third request gets served;
#  - 300 slow-loris connections (headers never finished) from 127.0.0.2 must not lock the page
#    out for others: the gateway caps connections per client address (--http-max-conns-per-ip),
#    and a connection whose headers stop coming is closed after 10 s idle;
#  - a client dribbling one header byte per second (never idle 10 s) is cut when the header
#    deadline (--http-header-timeout-ms, default 10 s from accept) passes;
#  - 300 such dribbling connections from one address (127.0.0.2) leave the page to 127.0.0.1 at
#    once and to 127.0.0.2 itself after the deadline; 300 spread over 30 loopback addresses (10
#    each, under the per-address cap, more than the 256 slots) lock the page out only until the
#    deadline cuts them.
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

# --- dribbling clients: one header byte per second, so the 10 s idle limit never fires
"$py" - "$H" << 'EOF'
import socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
LINE = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000

def page(src, timeout):
    """Seconds until GET / from source address src answered 200 (retrying), or None."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            s = socket.create_connection((host, int(port)), timeout=5, source_address=(src, 0))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if s.recv(64).startswith(b"HTTP/1.1 200"):
                s.close()
                return time.time() - t0
            s.close()
        except OSError:
            pass
        time.sleep(0.5)
    return None

class Dribblers:
    """n connections from the given source addresses, each sent one more byte every second."""
    def __init__(self, srcs, n):
        self.socks, self.cut, self.stop = [], [], False
        for i in range(n):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.bind((srcs[i % len(srcs)], 0))
                s.connect((host, int(port)))
                s.sendall(LINE[:1])
                self.socks.append([s, 1, time.time()])
            except OSError:
                s.close()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()
    def run(self):
        while not self.stop:
            time.sleep(1)
            for e in self.socks:
                s, k, t0 = e
                if s is None:
                    continue
                try:
                    s.sendall(LINE[k:k + 1])
                    e[1] = k + 1
                except OSError:
                    self.cut.append(time.time() - t0)
                    s.close()
                    e[0] = None
    def close(self):
        self.stop = True
        self.t.join()
        for s, _, _ in self.socks:
            if s is not None:
                s.close()

def secs(t):
    return "%.1f s" % t if t is not None else "never (30 s)"

def report(ok, name, detail):
    print(("PASS " if ok else "FAIL ") + name + " (" + detail + ")", flush=True)

# one dribbler: cut at the deadline (10 s), not left alone for the 30 s we wait
d = Dribblers(["127.0.0.1"], 1)
t0 = time.time()
while not d.cut and time.time() - t0 < 30:
    time.sleep(0.2)
d.close()
report(bool(d.cut) and 8 <= d.cut[0] <= 14, "slow_clients_dribbling_headers_cut_at_deadline",
       "cut after %.1f s" % d.cut[0] if d.cut else "still open after 30 s, %d bytes sent" %
       d.socks[0][1])

# 300 from one address: the per-address cap keeps 127.0.0.1's page; 127.0.0.2's own come back
# once the deadline has cut its 32 dribblers
d = Dribblers(["127.0.0.2"], 300)
other = page("127.0.0.1", 10)
same = page("127.0.0.2", 30)
d.close()
report(other is not None, "slow_clients_page_served_during_dribble_one_host",
       "127.0.0.1 after %s" % secs(other))
report(same is not None and len(d.cut) >= 1, "slow_clients_dribbling_host_served_after_deadline",
       "127.0.0.2 after %s, %d of its connections cut" % (secs(same), len(d.cut)))

# 300 from 30 addresses (10 each: no address reaches its cap, together they take all 256 slots)
d = Dribblers(["127.0.1.%d" % i for i in range(1, 31)], 300)
held = sum(1 for e in d.socks if e[0] is not None)
t = page("127.0.0.1", 30)
d.close()
report(t is not None and t < 20, "slow_clients_page_served_after_dribble_many_hosts",
       "%d connections opened, page after %s, %d cut" % (held, secs(t), len(d.cut)))
EOF
