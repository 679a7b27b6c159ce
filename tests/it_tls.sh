#!/usr/bin/env bash
# Black-box security tests (issue 9): a whole cluster over mutual TLS, etcd included
# (--client-cert-auth), with bearer-token auth on the router's Generate. Checks:
#   - generate over mTLS with the token works and equals `wanctl generate --local` bit for bit;
#   - a client with a certificate from another CA, a client without a certificate and a
#     plaintext client are refused; etcd refuses a TLS client without a certificate;
#   - Generate without a token or with a wrong one is UNAUTHENTICATED; tokens never reach logs;
#   - the HTTP gateway over HTTPS (--http-tls-*): a job with the token completes with the same
#     latent as the gRPC call; no token is 401; plain HTTP and a client trusting another CA fail;
#   - every service's --health-listen port (issue 19, item 10: what the k8s probes use while the
#     service port requires mutual TLS) answers a plaintext grpc.health.v1 Check with SERVING and
#     nothing else (UNIMPLEMENTED).
# Processes are started here directly (not deploy/local-cluster) so every flag is visible.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
bin="$root/$BUILD/bin"
T=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local any=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && any=1; done
    [ $any -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1${2:+: $2}"; }
export OMP_WAIT_POLICY=PASSIVE

if ! command -v openssl > /dev/null; then echo "FAIL tls_setup: openssl missing (deploy/install-deps.sh)"; exit 1; fi
bash deploy/make-test-ca.sh "$T/pki" > /dev/null || { fail tls_setup "make-test-ca.sh"; exit 1; }
P="$T/pki"
TOKEN="tok-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
printf '# router tokens\n\n  other-token-not-used  \n%s\n' "$TOKEN" > "$T/tokens"
"$bin/wanctl" make-tiny-model "$T/model" > /dev/null || { fail tls_setup "make-tiny-model"; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 100); do cp=$((20000 + RANDOM % 30000)); port_free $cp && port_free $((cp + 1)) && break; done
etcd --name tls --data-dir "$T/etcd" \
  --listen-client-urls "https://127.0.0.1:$cp" --advertise-client-urls "https://127.0.0.1:$cp" \
  --listen-peer-urls "http://127.0.0.1:$((cp + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((cp + 1))" \
  --initial-cluster "tls=http://127.0.0.1:$((cp + 1))" \
  --cert-file "$P/server.pem" --key-file "$P/server.key" --trusted-ca-file "$P/ca.pem" --client-cert-auth \
  --logger zap --log-outputs stderr --log-level warn > "$T/etcd.log" 2>&1 < /dev/null &
pids+=($!)
C=(--cacert "$P/ca.pem" --cert "$P/client.pem" --key "$P/client.key")
for _ in $(seq 200); do curl -fsS "${C[@]}" "https://127.0.0.1:$cp/health" 2>/dev/null | grep -q true && break; sleep 0.05; done
if curl -fsS "${C[@]}" "https://127.0.0.1:$cp/health" 2>/dev/null | grep -q true; then pass etcd_tls_up; else fail etcd_tls_up "$(tail -n 3 "$T/etcd.log")"; exit 1; fi
if curl -fsS --cacert "$P/ca.pem" "https://127.0.0.1:$cp/health" > /dev/null 2>&1; then
  fail etcd_refuses_client_without_cert
else pass etcd_refuses_client_without_cert; fi

TLS=(--tls-cert "$P/server.pem" --tls-key "$P/server.key" --tls-ca "$P/ca.pem")
S=(--etcd "127.0.0.1:$cp" --model "$T/model" "${TLS[@]}")
start() { # NAME BINARY ARGS...
  local name=$1; shift
  "$@" --addr-file "$T/$name.addr" --health-listen 127.0.0.1:0 > "$T/$name.log" 2>&1 < /dev/null &
  pids+=($!)
}
start encoder "$bin/wan-encoder" "${S[@]}"
start decoder "$bin/wan-decoder" "${S[@]}"
start high "$bin/wan-expert" --role high "${S[@]}"
start low "$bin/wan-expert" --role low "${S[@]}"
start router "$bin/wan-router" --etcd "127.0.0.1:$cp" "${TLS[@]}" --auth-tokens "$T/tokens" --replica-wait-ms 20000 \
  --http-listen 127.0.0.1:0 --http-addr-file "$T/http.addr" --http-tls-cert "$P/server.pem" --http-tls-key "$P/server.key"
up=1
for n in encoder decoder high low router http; do
  for _ in $(seq 600); do [ -s "$T/$n.addr" ] && break; sleep 0.1; done
  [ -s "$T/$n.addr" ] || { up=0; fail tls_cluster_up "$n did not start: $(tail -n 3 "$T/$n.log")"; }
done
[ $up -eq 1 ] || exit 1
pass tls_cluster_up
R=$(cat "$T/router.addr")
G=("$bin/wanctl" generate --router "$R" --size 64x64 --frames 5 --steps 4 --seed 11 --prompt "tls fox" --quiet)
MC=(--tls-ca "$P/ca.pem" --tls-cert "$P/client.pem" --tls-key "$P/client.key")

"$bin/wanctl" generate --local --model "$T/model" --size 64x64 --frames 5 --steps 4 --seed 11 \
  --prompt "tls fox" --quiet --out "$T/local.mp4" --latent-out "$T/local.st" > /dev/null 2>&1
if "${G[@]}" "${MC[@]}" --token "$TOKEN" --out "$T/a.mp4" --latent-out "$T/a.st" > /dev/null 2> "$T/a.err" &&
   cmp -s "$T/a.st" "$T/local.st"; then
  pass mtls_generate_bit_identical
else fail mtls_generate_bit_identical "$(tail -n 2 "$T/a.err")"; fi
if WANSERVE_TOKEN="$TOKEN" "${G[@]}" "${MC[@]}" --out "$T/b.mp4" > /dev/null 2> "$T/b.err"; then
  pass token_from_env
else fail token_from_env "$(tail -n 1 "$T/b.err")"; fi

refused() { # NAME EXPECT_REGEX ARGS... : the call must fail, stderr matching EXPECT_REGEX
  local name=$1 re=$2; shift 2
  if timeout 60 "${G[@]}" "$@" --out "$T/$name.mp4" > /dev/null 2> "$T/$name.err"; then
    fail "$name" "the call succeeded"
  elif grep -Eq "$re" "$T/$name.err"; then pass "$name"
  else fail "$name" "$(tail -n 1 "$T/$name.err")"; fi
}
refused token_missing_unauthenticated UNAUTHENTICATED "${MC[@]}"
refused token_wrong_unauthenticated UNAUTHENTICATED "${MC[@]}" --token "x$TOKEN"
refused token_prefix_unauthenticated UNAUTHENTICATED "${MC[@]}" --token "${TOKEN%?}"

# plaintext health ports beside the mTLS service ports (a client with no certificate at all)
for n in encoder decoder high low router; do
  if [ ! -s "$T/$n.addr.health" ]; then fail "health_port_${n}_plaintext_serving" "no $n.addr.health"; continue; fi
  /usr/bin/python3 - "$(cat "$T/$n.addr.health")" "$n" << 'EOF'
import sys, grpc
addr, name = sys.argv[1:3]
ch = grpc.insecure_channel(addr)
try:
    r = ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10)
    print(("PASS" if r == b"\x08\x01" else "FAIL") + " health_port_%s_plaintext_serving" % name +
          ("" if r == b"\x08\x01" else ": %r" % r))
except grpc.RpcError as e:
    print("FAIL health_port_%s_plaintext_serving: %s" % (name, e.code()))
try:
    ch.unary_unary("/wanserve.v1.Router/Generate")(b"", timeout=10)
    print("FAIL health_port_%s_only_health: Generate answered" % name)
except grpc.RpcError as e:
    ok = e.code() == grpc.StatusCode.UNIMPLEMENTED
    print(("PASS" if ok else "FAIL") + " health_port_%s_only_health" % name +
          ("" if ok else ": %s" % e.code()))
EOF
done
refused mtls_wrong_ca_cert_refused UNAVAILABLE --tls-ca "$P/ca.pem" --tls-cert "$P/rogue.pem" --tls-key "$P/rogue.key" --token "$TOKEN"
refused mtls_no_client_cert_refused UNAVAILABLE --tls-ca "$P/ca.pem" --token "$TOKEN"
refused plaintext_client_refused UNAVAILABLE --token "$TOKEN"
# a client that does not trust the server's CA refuses the server
refused client_rejects_unknown_server_ca UNAVAILABLE --tls-ca "$P/rogue-ca.pem" --tls-cert "$P/client.pem" --tls-key "$P/client.key" --token "$TOKEN"

# an expert reached directly without a client certificate: refused at the handshake (Debian's
# python3-grpcio, an independent client; /usr/bin/python3 because the first python3 on PATH may
# be a separate build without Debian's packages)
py=/usr/bin/python3
if ! "$py" -c 'import grpc' 2> /dev/null; then
  fail expert_refuses_python_client_without_cert "python3-grpcio missing (deploy/install-deps.sh)"
else
  if "$py" - "$(cat "$T/high.addr")" "$P" > "$T/py.out" 2>&1 <<'PY'
import sys, grpc
addr, pki = sys.argv[1], sys.argv[2]
rd = lambda n: open(pki + "/" + n, "rb").read()
def ready(creds):
    try:
        grpc.channel_ready_future(grpc.secure_channel(addr, creds)).result(timeout=5)
        return True
    except grpc.FutureTimeoutError:
        return False
# the control: the same client with the CA's client certificate connects
if not ready(grpc.ssl_channel_credentials(rd("ca.pem"), rd("client.key"), rd("client.pem"))):
    print("could not connect even with a client certificate"); sys.exit(1)
if ready(grpc.ssl_channel_credentials(root_certificates=rd("ca.pem"))):
    print("connected without a client certificate"); sys.exit(1)
print("refused"); sys.exit(0)
PY
  then pass expert_refuses_python_client_without_cert; else fail expert_refuses_python_client_without_cert "$(tail -n 1 "$T/py.out")"; fi
fi

# --- the HTTP gateway over HTTPS, through the same mTLS'd router
H="https://$(cat "$T/http.addr")"
HC=(curl -sS --max-time 30 --cacert "$P/ca.pem")
job=$("${HC[@]}" -X POST "$H/v1/videos" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"prompt": "tls fox", "size": "64x64", "frames": 5, "steps": 4, "seed": 11}' 2> "$T/https.err")
id=$(printf '%s' "$job" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
for _ in $(seq 600); do
  [ -n "$id" ] || break
  "${HC[@]}" -H "Authorization: Bearer $TOKEN" "$H/v1/videos/$id" 2>> "$T/https.err" | grep -qE '"status":"(completed|failed|cancelled)"' && break
  sleep 0.1
done
"${HC[@]}" -o "$T/https.mp4" -H "Authorization: Bearer $TOKEN" "$H/v1/videos/$id/content" 2>> "$T/https.err"
if [ -n "$id" ] && cmp -s "$T/https.mp4" "$T/a.mp4"; then pass https_gateway_job_equals_grpc
else fail https_gateway_job_equals_grpc "job '$job' $(tail -n 1 "$T/https.err")"; fi
code=$("${HC[@]}" -o /dev/null -w '%{http_code}' -X POST "$H/v1/videos" -d '{"prompt": "x"}' 2>&1)
if [ "$code" = 401 ]; then pass https_gateway_no_token_401; else fail https_gateway_no_token_401 "got $code"; fi
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' "http://$(cat "$T/http.addr")/healthz" 2> /dev/null)
if [ "$code" = 200 ]; then fail https_gateway_refuses_plain_http "a plain HTTP request was answered"
else pass https_gateway_refuses_plain_http; fi
if curl -sS --max-time 10 --cacert "$P/rogue-ca.pem" -o /dev/null "$H/healthz" 2> "$T/https-rogue.err"; then
  fail https_gateway_untrusted_by_other_ca "a client trusting another CA connected"
else pass https_gateway_untrusted_by_other_ca; fi

# half a TLS pair is a clear start-up error, not a plain-HTTP gateway
if timeout 30 "$bin/wan-router" --etcd "127.0.0.1:$cp" "${TLS[@]}" --listen 127.0.0.1:0 \
  --http-listen 127.0.0.1:0 --http-tls-cert "$P/server.pem" > "$T/half.out" 2>&1; then
  fail https_gateway_half_pair_refused "the router started"
elif grep -q -- "--http-tls-cert and --http-tls-key go together" "$T/half.out"; then
  pass https_gateway_half_pair_refused
else fail https_gateway_half_pair_refused "$(tail -n 1 "$T/half.out")"; fi

for e in "$T"/mtls_*.err "$T"/plaintext*.err; do echo "  $(basename "$e"): $(tail -n 1 "$e" | cut -c1-150)"; done
if grep -rqF -- "$TOKEN" "$T"/*.log "$T"/*.err; then fail token_not_in_logs
else pass token_not_in_logs; fi
if grep -rq "PRIVATE KEY" "$T"/*.log "$T"/*.err; then fail key_not_in_logs; else pass key_not_in_logs; fi

# the router's reports are in etcd on a lease (so they leave with it)
EC=(etcdctl --endpoints "https://127.0.0.1:$cp" --cacert "$P/ca.pem" --cert "$P/client.pem" --key "$P/client.key")
for _ in $(seq 50); do "${EC[@]}" get --prefix /wanserve/v1/stats/router/ --keys-only 2>/dev/null | grep -q . && break; sleep 0.1; done
if "${EC[@]}" get --prefix /wanserve/v1/stats/router/ -w json 2> "$T/ec.err" | grep -Eq '"lease":[1-9]'; then
  pass router_stats_key_leased
else fail router_stats_key_leased "$("${EC[@]}" get --prefix /wanserve/v1/stats/ -w json 2>&1 | cut -c1-200)"; fi

# wanctl reads the TLS etcd with the same flags the services use; without a certificate it fails
if "$bin/wanctl" status --etcd "127.0.0.1:$cp" "${MC[@]}" > "$T/status.out" 2>&1 &&
   grep -q "expert-high" "$T/status.out" && grep -q "expert-low" "$T/status.out"; then
  pass wanctl_status_over_mtls_etcd
else fail wanctl_status_over_mtls_etcd "$(tail -n 2 "$T/status.out")"; fi
if timeout 30 "$bin/wanctl" status --etcd "127.0.0.1:$cp" --tls-ca "$P/ca.pem" > "$T/status2.out" 2>&1; then
  fail wanctl_status_without_cert_refused "it listed $(wc -l < "$T/status2.out") lines"
else pass wanctl_status_without_cert_refused; fi

# the health port follows the drain: SIGTERM to the router while a Generate is in flight turns
# its plaintext health check NOT_SERVING (what takes the pod out of its Service) until it exits
"${G[@]}" "${MC[@]}" --token "$TOKEN" --size 256x256 --frames 17 --steps 20 --out "$T/drain.mp4" \
  > /dev/null 2>&1 &
gen_pid=$!
rh=$(cat "$T/router.addr.health") # read now: the router removes it as it exits
sleep 2
kill -TERM "${pids[5]}"
/usr/bin/python3 - "$rh" << 'EOF'
import sys, time, grpc
ch = grpc.insecure_channel(sys.argv[1])
seen, t0 = [], time.time()
while time.time() - t0 < 5:
    try:
        seen.append(ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=2))
    except grpc.RpcError as e:
        seen.append(str(e.code()))
    if seen[-1] == b"\x08\x02":
        break
    time.sleep(0.1)
ok = seen and seen[-1] == b"\x08\x02"
print(("PASS" if ok else "FAIL") + " health_port_not_serving_while_draining" +
      ("" if ok else ": %r" % sorted(set(map(str, seen)))))
EOF
wait "$gen_pid" 2> /dev/null
# then it exits by itself once the call is done (waited for here, so the stop below is in order)
for _ in $(seq 300); do kill -0 "${pids[5]}" 2> /dev/null || break; sleep 0.1; done

# graceful stop of every service: exit status 0 and no sanitizer report (under `make asan`)
svc_pids=("${pids[@]:1}")
for p in "${svc_pids[@]}"; do kill -TERM "$p" 2> /dev/null; done
clean=1
for p in "${svc_pids[@]}"; do
  for _ in $(seq 300); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
  wait "$p" 2> /dev/null || { clean=0; echo "  pid $p exited with status $?"; }
done
if grep -lE "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error" "$T"/*.log > /dev/null 2>&1; then clean=0; fi
if [ $clean -eq 1 ]; then pass tls_services_stop_cleanly; else fail tls_services_stop_cleanly "$(grep -lE 'Sanitizer|runtime error' "$T"/*.log)"; fi
# every leased key goes with its service; HTTP job records outlive their router by design
# (issue 18: another router serves them), so they are not counted
left=$("${EC[@]}" get --prefix /wanserve/v1/ --keys-only 2>&1 | grep -v '^$' | grep -v '^/wanserve/v1/jobs/')
if [ -z "$left" ]; then pass no_keys_left_after_graceful_stop
else fail no_keys_left_after_graceful_stop "$(echo "$left" | head -n 3 | tr '\n' ' ')"; fi
pids=("${pids[0]}")
