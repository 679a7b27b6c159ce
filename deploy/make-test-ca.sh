#!/usr/bin/env bash
# deploy/make-test-ca.sh DIR — a throwaway PKI for TLS / mutual-TLS tests and local clusters:
#   DIR/ca.pem ca.key            the test CA (EC P-256, 2 days)
#   DIR/server.pem server.key    server certificate for localhost / 127.0.0.1 (serverAuth+clientAuth:
#                                the same identity serves and, as a service, calls others and etcd)
#   DIR/client.pem client.key    client certificate (clientAuth) signed by the CA
#   DIR/rogue-ca.pem rogue.pem rogue.key   a second CA and a client certificate it signed: what
#                                a server that trusts only ca.pem must refuse
# Keys are written 0600. Needs openssl. Never use these for anything but tests.
set -euo pipefail
dir=${1:?usage: make-test-ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077
days=2
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # NAME CN
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days $days -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$1.pem" 2>/dev/null
}
leaf() { # NAME CN CA EXT
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf '%s\n' "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days $days \
    -sha256 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "wanserve test CA"
leaf server "wanserve test server" ca \
  "subjectAltName=DNS:localhost,IP:127.0.0.1
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth"
leaf client "wanserve test client" ca \
  "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
ca rogue-ca "not the wanserve CA"
leaf rogue "wanserve test client" rogue-ca \
  "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ./*.srl
chmod 644 ./*.pem
echo "make-test-ca: CA and certificates in $dir"
