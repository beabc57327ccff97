#!/usr/bin/env bash
# HAProxy terminating TLS in front of plain ws2api, started as one "gateway" for
# scripts/loadtest.sh (LOAD_GATEWAY_BIN=scripts/haproxy-tls-front.sh): the README's
# advice before ws2api spoke TLS itself, measured with the same workload. Takes ws2api's
# flags; HAProxy binds the --listen address with TLS (HAPROXY_TLS_PEM: certificate and key
# in one PEM file), ws2api listens on HAPROXY_BACKEND (default 127.0.0.1:7101) with
# --proxy-protocol and gets `send-proxy-v2-ssl-cn`. Both are children of this script, so the
# loadtest sampler (which sums a gateway's process tree) counts their RSS and CPU together.
# SIGTERM stops HAProxy, then ws2api (its orderly stop sends every Disconnect).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WS2API=${HAPROXY_WS2API_BIN:-$ROOT/target/release/ws2api}
PEM=${HAPROXY_TLS_PEM:?HAPROXY_TLS_PEM: certificate and key in one PEM file}
BACKEND=${HAPROXY_BACKEND:-127.0.0.1:7101}
HAPROXY=${HAPROXY_BIN:-haproxy}

args=() listen=
while [ $# -gt 0 ]; do
    case "$1" in
        --listen) listen=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
[ -n "$listen" ] || { echo "haproxy-tls-front.sh: --listen is needed" >&2; exit 2; }

cfg=$(mktemp /tmp/ws2api-haproxy-front.XXXXXX.cfg)
cat > "$cfg" <<CFG
global
    log stderr format short local0 warning
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend wss
    bind $listen ssl crt $PEM alpn http/1.1
    default_backend gateway
backend gateway
    server gw $BACKEND send-proxy-v2-ssl-cn
CFG

"$WS2API" --listen "$BACKEND" --proxy-protocol "${args[@]}" &
GW=$!
"$HAPROXY" -db -f "$cfg" &
HA=$!
stop() {
    kill -TERM "$HA" 2>/dev/null || true
    wait "$HA" 2>/dev/null || true
    kill -TERM "$GW" 2>/dev/null || true
    wait "$GW" 2>/dev/null || true
    rm -f "$cfg"
    exit 0
}
trap stop TERM INT
# Either one ending ends both.
wait -n "$GW" "$HA" || true
stop
