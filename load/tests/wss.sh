#!/usr/bin/env bash
# ws2api-load over wss:// against a real TLS WebSocket server: Python's `websockets`
# (load/tests/wss_echo.py) echoing plain, TLS and mutual-TLS on 127.0.0.1, certificates
# made here with the openssl command line. Checks that every message is answered over
# ws:// and wss:// (open and closed loop, with and without a client certificate), that
# later connections resume the TLS session of earlier ones, that a
# wrong CA, server name or missing client certificate fails the handshake of every
# connection (exit 1), and that bad TLS flags are one-line errors with exit code 2.
#
#   cargo build --release -p ws2api-load && load/tests/wss.sh
#   WS2API_LOAD=/path/to/ws2api-load load/tests/wss.sh
#
# Needs: openssl, python3 with the `websockets` package. About 10 s; no sleeps (the server
# prints its ports once it listens). Exit code 0 if every check passed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

LOAD=${WS2API_LOAD:-target/release/ws2api-load}
PYTHON=${PYTHON:-python3}
[ -x "$LOAD" ] || { echo "wss.sh: $LOAD not found (cargo build --release -p ws2api-load)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "wss.sh: openssl not found" >&2; exit 2; }
"$PYTHON" -c 'import websockets' 2>/dev/null || { echo "wss.sh: python3 module websockets missing" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ws2api-load-wss.XXXXXX")
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---- certificates: a CA, a server (localhost, 127.0.0.1) and a client it signed; another CA
ssl() { openssl "$@" 2>>"$WORK/openssl.log" >/dev/null; }
ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
ssl req -x509 "${ec[@]}" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 -subj /CN=ws2api-load-test-ca
ssl req -x509 "${ec[@]}" -keyout "$WORK/other-ca.key" -out "$WORK/other-ca.pem" -days 2 -subj /CN=another-ca
leaf() { # name usage san
    ssl req "${ec[@]}" -keyout "$WORK/$1.key" -out "$WORK/$1.csr" -subj "/CN=$1"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=%s\n%s\n' "$2" "$3" > "$WORK/$1.ext"
    ssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
        -days 2 -extfile "$WORK/$1.ext" -out "$WORK/$1.pem"
}
leaf server serverAuth 'subjectAltName=DNS:localhost,IP:127.0.0.1'
leaf client clientAuth ''

# ---- the echo servers; their ports are the first line they print -----------------------
exec 3< <(exec "$PYTHON" load/tests/wss_echo.py "$WORK" 2>"$WORK/server.log")
SERVER_PID=$!
read -r -t 10 PORTS <&3 || { echo "wss.sh: the echo server did not start:" >&2; cat "$WORK/server.log" >&2; exit 2; }
for kv in $PORTS; do declare "PORT_${kv%%=*}=${kv#*=}"; done

FAILED=0
pass() { echo "ok   $1"; }
fail() { echo "FAIL $1: $2" >&2; FAILED=1; }
value() { awk -v k="$2" '$1 == k { print $2 }' "$WORK/$1.txt"; }

# run NAME EXPECTED_RC ARGS...: one load run, its summary in $WORK/NAME.txt.
run() {
    local name=$1 want=$2 rc=0
    shift 2
    "$LOAD" --summary "$WORK/$name.txt" --csv "$WORK/$name.csv" --ramp 2000 --drain 2s \
        --connect-timeout 3s "$@" 2>"$WORK/$name.log" || rc=$?
    if [ "$rc" != "$want" ]; then
        fail "$name" "exit code $rc, expected $want; its stderr:"
        tail -n 20 "$WORK/$name.log" >&2
        return 1
    fi
}
# echoed NAME CONNECTIONS: every connection up, every message answered, no error.
echoed() {
    local sent received up errors
    sent=$(value "$1" sent) received=$(value "$1" received)
    up=$(value "$1" connections_max) errors=$(value "$1" errors)
    if [ "$up" = "$2" ] && [ "$sent" -gt 0 ] && [ "$sent" = "$received" ] && [ "$errors" = 0 ]; then
        pass "$1: $up connections, $received of $sent answered"
    else
        fail "$1" "connections $up of $2, answered $received of $sent, errors $errors"
    fi
}
# refused NAME CONNECTIONS PATTERN: every connection failed its handshake, logged as PATTERN.
refused() {
    local n
    n=$(value "$1" errors_handshake)
    if [ "$n" = "$2" ] && grep -q "$3" "$WORK/$1.log"; then
        pass "$1: $n handshakes refused ($3)"
    else
        fail "$1" "errors_handshake $n of $2, or no \"$3\" in the log: $(head -n 2 "$WORK/$1.log")"
    fi
}
# flag_error NAME PATTERN ARGS...: exit code 2 and one line on stderr that matches PATTERN.
flag_error() {
    local name=$1 pattern=$2 rc=0
    shift 2
    "$LOAD" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" || rc=$?
    if [ "$rc" = 2 ] && [ "$(wc -l <"$WORK/$name.log")" = 1 ] && grep -q -- "$pattern" "$WORK/$name.log"; then
        pass "$name: $(cat "$WORK/$name.log")"
    else
        fail "$name" "exit code $rc, stderr: $(cat "$WORK/$name.log")"
    fi
}

CA=(--tls-ca "$WORK/ca.pem")
WSS="wss://127.0.0.1:$PORT_tls/"
MTLS="wss://127.0.0.1:$PORT_mtls/"
# 2 s: the first per-second row must see every connection up (Python takes ~1 s for 200
# TLS handshakes with a client certificate).
OPEN=(--connections 200 --interval 100ms --duration 2s)

run plain 0 --url "ws://127.0.0.1:$PORT_plain/" "${OPEN[@]}" && echoed plain 200
run tls 0 --url "$WSS" "${CA[@]}" "${OPEN[@]}" && echoed tls 200
# Resumption: 20 connections 10 ms apart, each finds a ticket an earlier one was sent.
resumed() { grep -c "^tls port=$PORT_tls resumed=1" "$WORK/server.log" || true; }
before=$(resumed)
run tls-resume 0 --url "$WSS" "${CA[@]}" --connections 20 --ramp 100 --interval 100ms \
    --duration 1s && echoed tls-resume 20
n=$(( $(resumed) - before ))
if [ "$n" -gt 0 ]; then pass "tls-resume: $n of 20 sessions resumed"; else fail tls-resume "no session resumed"; fi
run tls-closed-loop 0 --url "$WSS" "${CA[@]}" --connections 10 --closed-loop --duration 1500ms \
    && echoed tls-closed-loop 10
run tls-ip-name 0 --url "$WSS" "${CA[@]}" --tls-server-name 127.0.0.1 --connections 20 \
    --interval 100ms --duration 1500ms && echoed tls-ip-name 20
run mtls 0 --url "$MTLS" "${CA[@]}" --tls-client-cert "$WORK/client.pem" \
    --tls-client-key "$WORK/client.key" "${OPEN[@]}" && echoed mtls 200

SHORT=(--connections 20 --interval 100ms --duration 300ms)
run mtls-no-client-cert 1 --url "$MTLS" "${CA[@]}" "${SHORT[@]}" \
    && refused mtls-no-client-cert 20 "handshake"
run wrong-ca 1 --url "$WSS" --tls-ca "$WORK/other-ca.pem" "${SHORT[@]}" \
    && refused wrong-ca 20 "UnknownIssuer"
run wrong-name 1 --url "$WSS" "${CA[@]}" --tls-server-name ws2api.example "${SHORT[@]}" \
    && refused wrong-name 20 "not valid for name"

flag_error no-ca "--tls-ca: required" --url "$WSS"
flag_error missing-ca "$WORK/nope.pem" --url "$WSS" --tls-ca "$WORK/nope.pem"
flag_error not-pem "no CERTIFICATE" --url "$WSS" --tls-ca "$WORK/server.ext"
flag_error ca-without-wss "only with a wss://" --url "ws://127.0.0.1:$PORT_plain/" "${CA[@]}"
flag_error cert-without-key "one needs the other" --url "$WSS" "${CA[@]}" \
    --tls-client-cert "$WORK/client.pem"
flag_error key-not-pem "--tls-client-key" --url "$WSS" "${CA[@]}" \
    --tls-client-cert "$WORK/client.pem" --tls-client-key "$WORK/client.ext"

if [ "$FAILED" = 0 ]; then echo "wss.sh: all checks passed"; else echo "wss.sh: FAILED" >&2; fi
exit "$FAILED"
