#!/usr/bin/env bash
# TLS test (SPEC "TLS and client certificates"): three real ws2api gateways speaking
# wss:// (--shards 2 --ping-interval 0s), in front of a PHP API server that logs every
# request with its X-* headers (tests/tls/api.php), driven by Python `ssl` + `websockets`
# clients, raw sockets and `openssl s_client` (tests/tls/tls_test.py).
#
#   tests/tls/run.sh                       # uses target/release/ws2api
#   WS2API_BIN=/path/to/ws2api tests/tls/run.sh
#
# Gateways (each on its own ports, all with --tls-cert/--tls-key, an ECDSA P-256 server
# certificate for 127.0.0.1 signed by a test CA):
#   required  --tls-client-ca ca.pem (client auth required, the default)
#   optional  --tls-client-ca ca.pem --tls-client-auth optional
#   nocert    no client CA, --handshake-timeout 2s; its certificate files are copies the
#             test rewrites before SIGHUP
# Certificates are made here with the openssl CLI in the run's scratch folder: the test
# CA, an "other" CA, the server certificate and a second one (other CN and serial) for the
# SIGHUP reload, client certificates good (C, an O with a comma, CN), expired (2020,
# via `openssl ca -startdate/-enddate`, as OpenSSL 3.0's `x509` has no -not_before) and
# one signed by the other CA. Needs: openssl, php (php-cli), setsid (util-linux), python3
# with `websockets`, a built ws2api. Starts everything on free ports, waits until each
# accepts TCP connections, stops only what it started (by PID, on every exit path),
# exits with tls_test.py's status.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WORK_NAME=tls
# shellcheck source=../lib/php-servers.sh
. tests/lib/php-servers.sh

command -v openssl >/dev/null || { echo "run.sh: openssl not found (apt-get install openssl)" >&2; exit 2; }

GATEWAYS=(required optional nocert)

show_logs() { gateway_logs; }

# ---- certificates ---------------------------------------------------------------------

CERTS="$WORK/certs"
mkdir -p "$CERTS"
SSL_LOG="$WORK/openssl.log"

# The openssl CLI, its chatter kept in $SSL_LOG (shown if a step fails).
ossl() {
    openssl "$@" >>"$SSL_LOG" 2>&1 || { echo "run.sh: openssl $1 failed:" >&2; tail -n 20 "$SSL_LOG" >&2; return 1; }
}

# A self-signed CA: $1 file stem, $2 CN.
make_ca() {
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$CERTS/$1.key" -out "$CERTS/$1.pem" -days 2 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# A P-256 key and CSR: $1 file stem, $2 subject.
make_csr() {
    ossl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$CERTS/$1.key" -out "$CERTS/$1.csr" -subj "$2"
}

# An X.509 v3 leaf (webpki refuses v1, so always -extfile): $1 stem, $2 subject, $3 CA
# stem, $4 serial, $5 extensions file.
make_leaf() {
    make_csr "$1" "$2"
    ossl x509 -req -in "$CERTS/$1.csr" -CA "$CERTS/$3.pem" -CAkey "$CERTS/$3.key" \
        -set_serial "$4" -days 2 -extfile "$5" -out "$CERTS/$1.pem"
}

printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$CERTS/server.ext"
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$CERTS/client.ext"

make_ca ca "ws2api test CA"
make_ca other "ws2api other CA"
make_leaf server "/CN=ws2api test server" ca 101 "$CERTS/server.ext"
make_leaf server2 "/CN=ws2api test server reloaded" ca 102 "$CERTS/server.ext"
make_leaf good "/C=DE/O=Acme, Inc./CN=charger-17" ca 201 "$CERTS/client.ext"
make_leaf stranger "/O=Elsewhere/CN=charger-99" other 301 "$CERTS/client.ext"

# The expired client certificate: `openssl ca` takes explicit dates.
make_csr expired "/O=Acme/CN=charger-old"
: >"$CERTS/index.txt"
echo 0202 >"$CERTS/serial"
cat >"$CERTS/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
database = $CERTS/index.txt
serial = $CERTS/serial
new_certs_dir = $CERTS
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
organizationName = optional
EOF
ossl ca -batch -config "$CERTS/ca.cnf" -cert "$CERTS/ca.pem" -keyfile "$CERTS/ca.key" \
    -in "$CERTS/expired.csr" -out "$CERTS/expired.pem" -notext -extfile "$CERTS/client.ext" \
    -startdate 20200101000000Z -enddate 20200201000000Z

# The nocert gateway's files, which the SIGHUP check rewrites.
cp "$CERTS/server.pem" "$CERTS/live.pem"
cp "$CERTS/server.key" "$CERTS/live.key"

# ---- servers --------------------------------------------------------------------------

declare -A P_PUB P_CTL GW_PID
gateway_ports
start_php WS2API_TLS_LOG tests/tls/api.php

# The nocert gateway's --handshake-timeout (seconds), which a silent client runs into;
# also passed to the test.
HANDSHAKE_TIMEOUT=2
# Sets FLAGS to the TLS flags of gateway $1 (an array: no word splitting, no globbing).
flags_of() {
    case "$1" in
        required) FLAGS=(--tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key" --tls-client-ca "$CERTS/ca.pem") ;;
        optional) FLAGS=(--tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key" --tls-client-ca "$CERTS/ca.pem"
                         --tls-client-auth optional) ;;
        nocert) FLAGS=(--tls-cert "$CERTS/live.pem" --tls-key "$CERTS/live.key" --handshake-timeout "${HANDSHAKE_TIMEOUT}s") ;;
        *) echo "run.sh: unknown gateway $1" >&2; return 1 ;;
    esac
}

# The public ports are probed too (by start_gateways): one TCP connection each that
# closes before a ClientHello, which the gateway may count as a failed handshake;
# tls_test.py takes its metric baselines after that.
start_gateways flags_of wss

run_driver tests/tls/tls_test.py \
    "${gw_args[@]}" \
    --nocert-pid "${GW_PID[nocert]}" --nocert-stderr "$WORK/ws2api-nocert.err" \
    --handshake-timeout "$HANDSHAKE_TIMEOUT" --certs "$CERTS" --shards 2 --api-log "$LOG" --ws2api-bin "$WS2API_BIN"
