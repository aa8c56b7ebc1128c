#!/usr/bin/env bash
# Makes throwaway TLS material for the engine's TCP listener in DIR: a CA, a server
# certificate for 127.0.0.1 (server-cert.pem, server-key.pem) and, in DIR/client, a
# client certificate as DOCKER_CERT_PATH wants it (ca.pem, cert.pem, key.pem).
set -euo pipefail
dir=${1:?usage: tls.sh DIR}
mkdir -p "$dir/client"
cd "$dir"
q() { openssl "$@" >/dev/null 2>&1; }
q req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bottle-apply-test-ca \
  -keyout ca-key.pem -out ca.pem
q req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 -keyout server-key.pem -out server.csr
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
q x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile server.ext -out server-cert.pem
q req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bottle-apply-test-client -keyout client/key.pem -out client.csr
printf 'extendedKeyUsage=clientAuth\n' >client.ext
q x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile client.ext -out client/cert.pem
cp ca.pem client/ca.pem
chmod 0600 ca-key.pem server-key.pem client/key.pem
rm -f server.csr client.csr server.ext client.ext
