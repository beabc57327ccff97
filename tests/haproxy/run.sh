#!/usr/bin/env bash
# HAProxy test: HAProxy in TCP mode (send-proxy-v2, consistent hashing on the path)
# in front of TWO ws2api gateways started with --proxy-protocol, a small PHP API
# server (tests/haproxy/api.php) behind both, and Python `websockets` clients whose
# source address is 127.0.0.7: the API server must see X-Forwarded-For 127.0.0.7, one
# ClientId must always land on the same gateway, and a push through each gateway's
# control listener must reach its client. A second HAProxy frontend terminates TLS
# (wss://, an optional client certificate from a test CA that `openssl` makes here) and
# forwards with send-proxy-v2-ssl-cn: the API server must see X-Forwarded-Proto https on
# every request of such a connection, and X-Client-Cert-CN on its Connect only for a
# certificate that verified (CN charger-17, signed by the test CA): no certificate, or
# a self-signed one (CN mallory, which HAProxy lets through with verify != 0, as its own
# log line shows), gives no CN. Plain ws:// requests carry X-Forwarded-Proto http, and
# headers a client sends itself (X-Forwarded-Proto, X-Client-Cert-CN) are not passed on.
# One check also writes PROXY v2 SSL TLVs straight to a gateway (the flag combinations
# HAProxy does not produce on its own).
#
#   tests/haproxy/run.sh                      # uses target/release/ws2api
#   WS2API_BIN=/path/to/ws2api tests/haproxy/run.sh
#
# Needs: haproxy (apt-get install haproxy), php (php-cli), openssl, setsid (util-linux),
# python3 with `websockets`, a built ws2api. Starts everything on free ports, waits
# until each accepts TCP connections, stops only what it started, and ends with
# `N passed, M failed` (exit status 1 if any failed, 2 if something is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WS2API_BIN="${WS2API_BIN:-target/release/ws2api}"
PHP="${PHP:-php}"
PYTHON="${PYTHON:-python3}"
HAPROXY="${HAPROXY:-haproxy}"

[ -x "$WS2API_BIN" ] || { echo "run.sh: gateway binary not found: $WS2API_BIN (cargo build --release?)" >&2; exit 2; }
command -v "$HAPROXY" >/dev/null || { echo "run.sh: haproxy not found (apt-get install haproxy)" >&2; exit 2; }
command -v "$PHP" >/dev/null || { echo "run.sh: php not found (apt-get install php-cli)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "run.sh: openssl not found (apt-get install openssl)" >&2; exit 2; }
"$PYTHON" -c 'import websockets' 2>/dev/null || { echo "run.sh: python3 module websockets missing (python3 -m pip install websockets)" >&2; exit 2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/ws2api-haproxy.XXXXXX")"
PIDS=()      # processes this script started
PHP_PGID=""  # process group of the PHP server (it forks workers)

cleanup() {
    local pid
    if [ -n "$PHP_PGID" ]; then
        kill -TERM -- "-$PHP_PGID" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free TCP ports, all distinct: bound to port 0 together, then released. The sockets
# are closed before the ports are printed (and the helper has exited before they are
# used), so no server finds its port still held. (Tiny race until the servers bind
# them again; fine on a test machine.)
PORTS="$("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()
print(" ".join(map(str, ports)))
')"
read -r FRONT GW1 CTL1 GW2 CTL2 API TLSFRONT <<<"$PORTS"

# Certificates (EC P-256): a test CA; the server's, for 127.0.0.1 and localhost; a
# client's (CN charger-17) signed by the CA; and mallory's, self-signed, which does not
# verify against the CA. (Called in an `||` list, where `set -e` does not apply: every
# step says `|| return 1` itself.)
make_certs() {
    local d="$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=ws2api test CA" -keyout "$d/ca.key" -out "$d/ca.pem" || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" || return 1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/server.ext" || return 1
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/server.ext" -out "$d/server.crt" || return 1
    cat "$d/server.crt" "$d/server.key" >"$d/server.pem" || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/O=Acme/CN=charger-17" -keyout "$d/client.key" -out "$d/client.csr" || return 1
    openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -out "$d/client.crt" || return 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=mallory" -keyout "$d/mallory.key" -out "$d/mallory.crt" || return 1
    # The premise of the checks: charger-17 verifies against the test CA, mallory not.
    openssl verify -CAfile "$d/ca.pem" "$d/client.crt" || return 1
    if openssl verify -CAfile "$d/ca.pem" "$d/mallory.crt"; then
        echo "mallory's self-signed certificate verified against the test CA" >&2
        return 1
    fi
}
make_certs >"$WORK/openssl.log" 2>&1 || { cat "$WORK/openssl.log" >&2; echo "run.sh: could not make the test certificates" >&2; exit 1; }

# Wait until 127.0.0.1:$1 accepts a TCP connection: probe every 0.1 s, at most 10 s.
# Fails early if the process ($2) has already exited.
wait_port() {
    local port="$1" pid="$2" name="$3" deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "run.sh: $name exited before listening on port $port" >&2; return 1; }
        sleep 0.1
    done
    echo "run.sh: $name did not listen on port $port within 10 s" >&2
    return 1
}

show_logs() {
    local name
    for name in gw1 gw2 haproxy php; do
        echo "---- $name (last 30 lines) ----" >&2
        tail -n 30 "$WORK/$name.log" >&2 || true
    done
}

echo "run.sh: haproxy on 127.0.0.1:$FRONT (ws) and 127.0.0.1:$TLSFRONT (wss) -> ws2api 127.0.0.1:$GW1 (control $CTL1), 127.0.0.1:$GW2 (control $CTL2); php API on 127.0.0.1:$API"

HAPROXY_TEST_LOG="$WORK/seen.log" \
PHP_CLI_SERVER_WORKERS=4 \
    setsid "$PHP" -S "127.0.0.1:$API" tests/haproxy/api.php >"$WORK/php.log" 2>&1 &
PHP_PID=$!
PIDS+=("$PHP_PID")
PHP_PGID=$PHP_PID

for n in 1 2; do
    port_var="GW$n" control_var="CTL$n"
    "$WS2API_BIN" \
        --listen "127.0.0.1:${!port_var}" \
        --control-listen "127.0.0.1:${!control_var}" \
        --api-url "http://127.0.0.1:$API/" \
        --proxy-protocol \
        --shards 2 \
        >"$WORK/gw$n.log" 2>&1 &
    PIDS+=($!)
    eval "GW${n}_PID=$!"
done

sed -e "s/@FRONT@/$FRONT/" -e "s/@GW1@/$GW1/" -e "s/@GW2@/$GW2/" \
    -e "s/@TLSFRONT@/$TLSFRONT/" -e "s|@WORK@|$WORK|g" \
    tests/haproxy/haproxy.cfg.in >"$WORK/haproxy.cfg"
"$HAPROXY" -c -q -f "$WORK/haproxy.cfg" || { echo "run.sh: bad haproxy configuration" >&2; exit 1; }
"$HAPROXY" -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")

if ! wait_port "$API" "$PHP_PID" "php" \
    || ! wait_port "$GW1" "$GW1_PID" "ws2api 1" || ! wait_port "$CTL1" "$GW1_PID" "ws2api 1 control" \
    || ! wait_port "$GW2" "$GW2_PID" "ws2api 2" || ! wait_port "$CTL2" "$GW2_PID" "ws2api 2 control" \
    || ! wait_port "$FRONT" "$HAPROXY_PID" "haproxy" \
    || ! wait_port "$TLSFRONT" "$HAPROXY_PID" "haproxy (TLS)"; then
    show_logs
    echo "0 passed, 1 failed"
    exit 1
fi

status=0
"$PYTHON" tests/haproxy/haproxy_test.py \
    --front "127.0.0.1:$FRONT" \
    --tls-front "127.0.0.1:$TLSFRONT" --certs "$WORK" --haproxy-log "$WORK/haproxy.log" \
    --gateways "127.0.0.1:$GW1" "127.0.0.1:$GW2" \
    --controls "http://127.0.0.1:$CTL1/" "http://127.0.0.1:$CTL2/" \
    --api "http://127.0.0.1:$API" || status=$?

if [ "$status" -ne 0 ]; then
    show_logs
fi
exit "$status"
