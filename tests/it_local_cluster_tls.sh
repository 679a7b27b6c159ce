#!/usr/bin/env bash
# `deploy/local-cluster up --tls`: etcd over HTTPS with client certificates and every service on
# mutual TLS, from a test CA made in the state folder. wanctl finds the client certificate there:
# generate (bit-identical to --local), status and an etcd restart drill work with no TLS flags;
# a plaintext client and a TLS client without a certificate are refused.
source "$(dirname "$0")/itlib.sh"

if ! "$LC" up --tls > "$T/up.log" 2>&1; then fail local_tls_up "$(tail -n 3 "$T/up.log")"; exit 1; fi
check local_tls_status_says_tls grep -q "^tls: " "$T/up.log"
P="$WANSERVE_HOME/local-cluster/pki"
R=$(sed -n 's/^router: //p' "$T/up.log")
G=(--size 64x64 --frames 5 --steps 4 --seed 3 --prompt "tls river" --quiet)
"$bin/wanctl" generate --local --model "$WANSERVE_HOME/local-cluster/tiny-model" "${G[@]}" \
  --out "$T/local.mp4" --latent-out "$T/local.st" > /dev/null 2>&1
if "$bin/wanctl" generate "${G[@]}" --out "$T/a.mp4" --latent-out "$T/a.st" > /dev/null 2> "$T/a.err" &&
   cmp -s "$T/a.st" "$T/local.st"; then
  pass local_tls_generate_bit_identical
else fail local_tls_generate_bit_identical "$(tail -n 2 "$T/a.err")"; fi
if "$bin/wanctl" status > "$T/status.out" 2>&1 && grep -q "expert-low" "$T/status.out"; then
  pass local_tls_wanctl_status
else fail local_tls_wanctl_status "$(tail -n 2 "$T/status.out")"; fi
if timeout 60 "$bin/wanctl" generate --router "$R" "${G[@]}" --out "$T/p.mp4" > /dev/null 2> "$T/p.err"; then
  fail local_tls_plaintext_refused "a plaintext client generated a video"
else pass local_tls_plaintext_refused; fi
if timeout 60 "$bin/wanctl" generate --router "$R" --tls-ca "$P/ca.pem" "${G[@]}" --out "$T/n.mp4" > /dev/null 2> "$T/n.err"; then
  fail local_tls_no_client_cert_refused "a client without a certificate generated a video"
else pass local_tls_no_client_cert_refused; fi
if curl -fsS --max-time 10 --cacert "$P/ca.pem" "https://$(sed -n 's/^etcd: //p' "$T/up.log")/health" > /dev/null 2>&1; then
  fail local_tls_etcd_needs_client_cert
else pass local_tls_etcd_needs_client_cert; fi
# the etcd restart drill keeps TLS: the services re-register and a request succeeds again
"$LC" etcd-stop > /dev/null 2>&1
"$LC" etcd-start > "$T/es.log" 2>&1
ok=0
for _ in $(seq 100); do
  "$bin/wanctl" status 2> /dev/null | grep -q "expert-low" && { ok=1; break; }
  sleep 0.2
done
if [ $ok -eq 1 ] && "$bin/wanctl" generate "${G[@]}" --out "$T/b.mp4" --latent-out "$T/b.st" > /dev/null 2> "$T/b.err" &&
   cmp -s "$T/b.st" "$T/local.st"; then
  pass local_tls_etcd_restart_keeps_serving
else fail local_tls_etcd_restart_keeps_serving "$(tail -n 2 "$T/es.log" "$T/b.err" 2> /dev/null | tr '\n' ' ')"; fi
